"""How often a P-CoT demo run's greedy programs write their operations, and how often each kind
is right (the mechanism behind the demo's table; see README "Results").

    .venv/bin/python benchmarks/program_styles.py runs/demo

A program "writes operations" when some assignment has an arithmetic operator
(``daily = hours * rate``); otherwise every value it assigns is a number the model worked out
itself (``daily = 14``), the ``mental`` level's other annotation style.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OPERATION = re.compile(r"^[ \t]+\w+ = .*[-+*/]", re.MULTILINE)


def styles(predictions: Path) -> dict[str, tuple[int, float]]:
    """``{"operations"|"numbers": (count, top-1 accuracy %)}`` over a predictions.jsonl."""
    counts = {"operations": [0, 0], "numbers": [0, 0]}
    for line in predictions.read_text().splitlines():
        row = json.loads(line)
        kind = "operations" if OPERATION.search(row["completion"]) else "numbers"
        counts[kind][0] += 1
        counts[kind][1] += bool(row["correct"])
    return {k: (n, round(100 * ok / n, 1) if n else 0.0) for k, (n, ok) in counts.items()}


def main(run: str) -> None:
    print("| model | programs with operations | their top-1 | programs of numbers | their top-1 |")
    print("|---|---|---|---|---|")
    for method in ("warmup", "sft", "reft"):
        path = Path(run) / method / "eval" / "predictions.jsonl"
        if path.exists():
            s = styles(path)
            total = sum(n for n, _ in s.values())
            print(f"| {method} | {s['operations'][0]}/{total} | {s['operations'][1]} "
                  f"| {s['numbers'][0]}/{total} | {s['numbers'][1]} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
