"""Threads: the same work with 1 and with 2 intra-op threads, on this (shared) 2-core machine.

Rows: sampling (reft's sampler and HF ``model.generate``: 32 completions, <= 128 tokens,
the warm model) and one training step (forward + backward + AdamW on 16 synthetic SFT
examples). Settings alternate within each round. CPU seconds are the process's own: a
thread that spins at an OpenMP barrier while its partner waits for a core counts there.

    .venv/bin/python benchmarks/threads.py
    .venv/bin/python benchmarks/threads.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.generation import hf_generate, reft_generate  # noqa: E402


def train_step(model, batch) -> None:
    from reft.training.sft import token_nll

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    nll, n = token_nll(model, batch)
    (nll / n).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def main() -> int:
    from reft.data.prompts import build_target
    from reft.training.sft import collate, encode_pairs

    args = common.parser(__doc__).parse_args()
    common.setup(args.threads)
    repeats = 1 if args.quick else args.repeats
    n, new = (8, 32) if args.quick else (32, 128)
    model, tok = common.load(common.warm_dir())
    examples = common.questions(n, split="test")
    prompts = common.prompts_of(examples)
    gen = dict(max_new_tokens=new, batch_size=64, greedy=False)
    feats = encode_pairs(prompts[:16], [build_target(e, cot="nl") for e in examples[:16]], tok, 256)
    batch = collate(feats, tok.pad_token_id)
    work = {
        "reft sampler": lambda: reft_generate(model, tok, prompts, **gen),
        "HF model.generate": lambda: hf_generate(model, tok, prompts, **gen),
        "train step (16 x ~110 tokens)": lambda: train_step(model, batch),
    }

    def at(threads, fn):
        def run():
            torch.set_num_threads(threads)
            try:
                return fn()
            finally:
                torch.set_num_threads(args.threads)

        return run

    sides = {(name, t): at(t, fn) for name, fn in work.items() for t in (1, 2)}
    res = common.interleave(sides, repeats=repeats)
    rows = []
    for name in work:
        one, two = res[name, 1], res[name, 2]
        w1, w2 = common.median([r[0] for r in one]), common.median([r[0] for r in two])
        c1, c2 = common.median([r[1] for r in one]), common.median([r[1] for r in two])
        rows.append([name, w1, c1, w2, c2, w1 / w2])
    header = ["work", "1 thread: wall s", "CPU s", "2 threads: wall s", "CPU s",
              "speed-up from 2nd thread"]
    common.report("Threads: 1 vs 2", f"{repeats} alternating rounds, medians\n\n"
                  + common.table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
