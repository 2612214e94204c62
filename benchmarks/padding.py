"""How many of the tokens PPO's forwards compute are padding, and what each layout costs:
one padded forward over the whole rollout (reft before issue 21), the length-grouped,
trimmed micro-batches of ``Sequences.micro_batches`` (the default), and packed rows
(``--pack``: no padding, sequences kept apart by position ids).

A rollout is sampled from the warm tiny model (``common.warm_dir``), Q questions x K samples
at temperature 1, up to ``--max-len`` new tokens; the counts are of positions a forward
computes (rows x padded width summed over forwards) against real tokens. The time is that of
PPO's rollout forwards (policy with value head, reference) plus one update pass over the
rollout as one mini-batch, on the same rollout, median of ``--repeats``.

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
    timer = Timer(model, seqs, a.repeats)
    rows = [["one padded forward (before)", 1, real, whole, f"{whole / real:.2f}", timer(0, False)]]
    for budget in (8192, 2048, 512):
        parts = [seqs.select(g).trim() for g in seqs.micro_batches(budget)]
        done = sum(part.input_ids.numel() for part in parts)
        rows.append([f"micro-batches, budget {budget}", len(parts), real, done, f"{done / real:.2f}",
                     timer(budget, False)])
    for budget in (8192, 2048, 512):
        n = len(seqs.micro_batches(budget, packed=True))
        rows.append([f"packed rows (--pack), budget {budget}", n, real, real, "1.00", timer(budget, True)])
    common.report("Padding in PPO's forwards",
                  f"warm tiny model, {a.questions} questions x {a.samples} samples, up to {a.max_len} "
                  f"new tokens, T = 1; time: rollout forwards + one update pass, median of {a.repeats}\n\n"
                  + common.table(["layout", "forwards", "real tokens", "positions computed",
                                  "computed / real", "forward + update s"], rows))
    return 0


class Timer:
    """Seconds of PPO's rollout forwards + one update pass over ``seqs`` in a layout."""

    def __init__(self, model, seqs, repeats: int):
        import copy

        from reft.models.actor_critic import ActorCritic

        self.ac = ActorCritic(copy.deepcopy(model), "shared", value_free=False)
        self.ref = copy.deepcopy(model).eval()
        self.seqs, self.repeats = seqs, repeats

    def __call__(self, budget: int, pack: bool) -> str:
        import statistics
        import time
        from types import SimpleNamespace
        from unittest import mock

        import torch
        from accelerate import Accelerator

        import reft.training.ppo as ppo
        from reft.config import PPOConfig
        from reft.rollout.rollout import Experience

        cfg = PPOConfig(micro_batch_tokens=budget, pack=pack, mixed_precision="no", ppo_epochs=1,
                        mini_batch_size=len(self.seqs))
        run = SimpleNamespace(cfg=cfg, acc=Accelerator(cpu=True), ac=self.ac, ref=self.ref,
                              tokenizer=SimpleNamespace(pad_token_id=0), critic="shared",
                              pack_checked=True)
        scored = SimpleNamespace(gens=SimpleNamespace(logprobs=None, hidden=None))
        opt = torch.optim.SGD(self.ac.parameters(), lr=0.0)
        times = []
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            with mock.patch.object(ppo, "build_sequences", lambda *a, **k: self.seqs):
                seqs, old, ref, values = ppo.rollout_forward(run, scored)
            shape = seqs.response_mask.shape
            exp = Experience(**{f: getattr(seqs, f) for f in seqs.__dataclass_fields__},
                             old_logprobs=old, ref_logprobs=ref, values=values,
                             advantages=torch.randn(shape), returns=torch.zeros(shape))
            ppo.ppo_update(self.ac, opt, exp, cfg, run.acc)
            times.append(time.perf_counter() - t0)
        return f"{statistics.median(times):.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
