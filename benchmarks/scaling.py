"""Scaling: time per RL step (``reft ppo --estimator grpo``) as completion length and batch double.

The model is the untrained init model: it almost never samples EOS, so completions run to
the limit and the tokens per step really double with the limit (a warm model would stop
at ~60 tokens whatever the limit). Each cell is the median of timed steps over
``--repeats`` runs, configurations alternating within a round. "x prev" is the time ratio
to the cell before it, when the completion tokens per step double: 2.0 is linear in tokens.

    .venv/bin/python benchmarks/scaling.py            # lengths 64/128/256, batch 16/32/64
    .venv/bin/python benchmarks/scaling.py --trl      # the same grid for TRL GRPOTrainer too
    .venv/bin/python benchmarks/scaling.py --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common, rl_step  # noqa: E402

SAMPLES = 4


def grid(quick: bool) -> list[tuple[str, int, int]]:
    """(axis, questions per step, max completion length)."""
    if quick:
        return [("length", 2, 8), ("length", 2, 16), ("batch", 4, 16)]  # q=2, 16 tokens: length axis
    return ([("length", 8, n) for n in (64, 128, 256)]
            + [("batch", q, 128) for q in (4, 16)])  # q=8, 128 tokens is in the length axis


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--steps", type=int, default=3, help="steps per run (the first is dropped)")
    p.add_argument("--trl", action="store_true", help="also time TRL GRPOTrainer on the same grid")
    args = p.parse_args()
    common.setup(args.threads)
    repeats, steps = (1, 2) if args.quick else (args.repeats, args.steps)
    model_dir = common.init_dir()
    examples = common.questions(64 * steps, split="train")
    cells = grid(args.quick)
    sides = {"reft grpo": rl_step.run_reft} | ({"TRL GRPOTrainer": rl_step.run_trl} if args.trl else {})
    clocks = {(side, cell): rl_step.Clock() for side in sides for cell in cells}
    for _ in range(repeats):
        for cell in cells:
            for side, run in sides.items():
                _, q, n = cell
                clocks[side, cell].extend(run(model_dir, examples, q=q, k=SAMPLES, max_len=n, steps=steps))
    rows = []
    for side in sides:
        for axis in ("length", "batch"):
            axis_cells = [c for c in cells if c[0] == axis]
            if axis == "batch":  # the length cell at the batch axis's length completes it
                mid = next((c for c in cells if c[0] == "length" and c[2] == axis_cells[0][2]), None)
                axis_cells = sorted(axis_cells + ([mid] if mid else []), key=lambda c: c[1])
            prev = None
            for cell in axis_cells:
                c = clocks[side, cell]
                t, tok = common.median(c.steps), common.median(c.tokens)
                samp = common.median([d.get(rl_step.SAMPLING, 0.0) for d in c.phases])
                rows.append([side, axis, cell[1] * SAMPLES, cell[2], tok, t, samp, 1000 * t / tok,
                             f"{t / prev:.2f}" if prev else "-"])
                prev = t
    header = ["side", "axis", "completions/step", "max len", "completion tokens/step", "s/step",
              "of which sampling s", "ms per completion token", "x prev"]
    common.report("Scaling of one RL step", f"model `{model_dir.name}`, {SAMPLES} samples per question, "
                  f"{repeats} rounds x {steps - 1} timed steps per cell\n\n" + common.table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
