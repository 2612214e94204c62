"""How many of the tokens PPO's forwards compute are padding: one padded forward over the
whole rollout (reft before issue 21) against the length-grouped, trimmed micro-batches of
``Sequences.micro_batches`` (now), and fully packed rows (no padding at all).

A rollout is sampled from the warm tiny model (``common.warm_dir``), Q questions x K samples
at temperature 1, up to ``--max-len`` new tokens; the counts are of positions a forward
computes (rows x padded width summed over forwards) against real tokens.

    .venv/bin/python benchmarks/padding.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--max-len", type=int, default=128)
    a = p.parse_args()
    common.setup(a.threads)
    from reft.rollout.rollout import build_sequences
    from reft.rollout.sampler import generate, question_seed

    model, tok = common.load(common.warm_dir())
    examples = common.questions(a.questions, split="train")
    gens = generate(model, tok, common.prompts_of(examples), max_new_tokens=a.max_len,
                    num_samples=a.samples, seeds=[question_seed(0, i) for i in range(len(examples))])
    seqs = build_sequences(gens, tok.pad_token_id)
    real = int(seqs.attention_mask.sum())
    whole = seqs.input_ids.numel()
    rows = [["one padded forward (before)", 1, real, whole, f"{whole / real:.2f}"]]
    for budget in (8192, 2048, 512):
        parts = [seqs.select(g).trim() for g in seqs.micro_batches(budget)]
        done = sum(part.input_ids.numel() for part in parts)
        rows.append([f"micro-batches, budget {budget}", len(parts), real, done, f"{done / real:.2f}"])
    rows.append(["packed (no padding)", 1, real, real, "1.00"])
    common.report("Padding in PPO's forwards",
                  f"warm tiny model, {a.questions} questions x {a.samples} samples, up to {a.max_len} "
                  "new tokens, T = 1\n\n"
                  + common.table(["layout", "forwards", "real tokens", "positions computed",
                                  "computed / real"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
