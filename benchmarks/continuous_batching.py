"""Idle decode slots (issue 21, item 3): how full reft's sampler keeps its batches, and
transformers' own continuous-batching generation (``model.generate_batch``) against it.

reft's sampler drops a finished row from the batch (and its KV cache) once a quarter of the
rows have finished, so no decode step computes a finished row beyond that; what a waiting
prompt could still take is the room a shrinking batch leaves. This script counts, for the
warm tiny model at temperature 1, the rows each decode forward computes against the rows
still generating, and the mean batch size against ``--batch-size``; then it times
``generate_batch`` (paged attention, a slot freed by a finished sequence is refilled from
the queue) and reft's ``generate`` on the same prompts.

    .venv/bin/python benchmarks/continuous_batching.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402


def slot_use(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int) -> dict:
    """Rows computed by the decode forwards of ``generate``, and tokens sampled."""
    from reft.rollout.sampler import generate, question_seed

    rows: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda m, a, kw: rows.append(kw["input_ids"].size(0)) if kw["input_ids"].size(1) == 1 else None,
        with_kwargs=True)
    try:
        g = generate(model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                     seeds=[question_seed(0, i) for i in range(len(prompts))])
    finally:
        handle.remove()
    # every sampled token but each completion's first (drawn from the prefill) needs a decode
    # row; a row that has finished but is still in the batch is computed for nothing
    needed = sum(max(len(c) - 1, 0) for c in g.completion_ids)
    return {"decode_steps": len(rows), "rows_computed": sum(rows), "rows_needed": needed,
            "mean_batch": statistics.mean(rows) if rows else 0.0}


def main() -> int:
    a, model, tok, prompts = common.warm_sampling_args(__doc__, prompts=64, batch_size=32)
    from transformers import GenerationConfig

    from reft.rollout.sampler import generate, question_seed

    use = slot_use(model, tok, prompts, a.max_len, a.batch_size)
    ids = [tok(x)["input_ids"] for x in prompts]
    gc = GenerationConfig(max_new_tokens=a.max_len, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                          eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)

    def hf() -> int:
        out = model.generate_batch(inputs=ids, generation_config=gc, progress_bar=False)
        return sum(len(o.generated_tokens) for o in out.values())

    def ours() -> int:
        g = generate(model, tok, prompts, max_new_tokens=a.max_len, batch_size=a.batch_size,
                     seeds=[question_seed(0, i) for i in range(len(prompts))])
        return sum(map(len, g.completion_ids))

    got = common.interleave({"reft generate (rows dropped as they finish)": ours,
                             "transformers generate_batch (continuous batching)": hf}, a.repeats)
    rows = []
    for name, runs in got.items():
        s, tokens = common.median([w for w, _, _ in runs]), runs[-1][2]
        rows.append([name, f"{s:.2f}", tokens, f"{tokens / s:.0f}"])
    common.report(
        "Idle decode slots and continuous batching",
        f"warm tiny model, {a.prompts} prompts, T = 1, up to {a.max_len} new tokens, batch {a.batch_size}\n\n"
        f"reft's decode forwards: {use['decode_steps']} steps computed {use['rows_computed']} rows for "
        f"{use['rows_needed']} needed ({use['rows_computed'] / max(use['rows_needed'], 1):.3f}); mean batch "
        f"{use['mean_batch']:.1f} of {a.batch_size}\n\n"
        + common.table(["sampler", f"s (median of {a.repeats})", "tokens", "tokens/s"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
