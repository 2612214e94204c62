"""Does a static KV cache with a ``torch.compile``d decode step pay on this CPU (issue 21,
item 4)? Before building one into reft's sampler, measure transformers' own: ``model.generate``
with its default dynamic cache, with ``cache_implementation="static"``, and static with the
model's forward compiled by inductor, against reft's ``generate``; the compiled side is timed
twice, its first call (compilation included) and its median after.

    .venv/bin/python benchmarks/compiled_decode.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402


def main() -> int:
    a, model, tok, prompts = common.warm_sampling_args(__doc__, prompts=32)
    import torch

    from reft.rollout.sampler import generate, question_seed

    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)

    def hf(**kw):
        def run() -> int:
            torch.manual_seed(0)
            out = model.generate(**enc, max_new_tokens=a.max_len, do_sample=True, temperature=1.0,
                                 top_k=0, top_p=1.0, pad_token_id=tok.pad_token_id, **kw)
            return int((out[:, enc["input_ids"].size(1):] != tok.pad_token_id).sum())
        return run

    def ours() -> int:
        g = generate(model, tok, prompts, max_new_tokens=a.max_len, batch_size=a.prompts,
                     seeds=[question_seed(0, i) for i in range(len(prompts))])
        return sum(map(len, g.completion_ids))

    rows = []

    def add(results: dict) -> None:
        for name, runs in results.items():
            s = common.median([w for w, _, _ in runs])
            rows.append([name, f"{s:.2f}", f"{runs[-1][2] / s:.0f}"])

    add(common.interleave({"reft generate": ours, "model.generate, dynamic cache": hf(),
                           "model.generate, static cache": hf(cache_implementation="static")}, a.repeats))
    model.forward = torch.compile(model.forward, dynamic=False)
    compiled = hf(cache_implementation="static")
    first = common.timed(compiled)[0]
    rows.append(["model.generate, static cache, compiled forward: first call (compiling)", f"{first:.2f}", ""])
    add(common.interleave({"model.generate, static cache, compiled forward": compiled}, a.repeats, warmup=0))
    common.report("A compiled decode step on CPU",
                  f"warm tiny model, {a.prompts} prompts in one batch, T = 1, up to {a.max_len} new tokens\n\n"
                  + common.table(["sampler", f"s (median of {a.repeats})", "tokens/s"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
