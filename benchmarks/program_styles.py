"""How often a P-CoT demo run's greedy programs write their operations, and how often each kind
is right (the mechanism behind the demo's table; see README "Results"); the same for the
temperature-1 samples that vote@k and rerank@k read, and the ReFT run's last KL and entropy.

    .venv/bin/python benchmarks/program_styles.py runs/demo [more runs ...]

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


def why_unanswered(completion: str) -> str:
    """Why a P-CoT program gave no answer, read statically: it does not parse, or it reads a
    name it never assigns (a NameError when run), or something else."""
    import ast
    import builtins
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse("def solution():\n" + completion)
    except SyntaxError:
        return "syntax"
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    stored = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    loaded = {n.id for n in names if isinstance(n.ctx, ast.Load)}
    return "name" if loaded - stored - set(dir(builtins)) - {"math", "sympy"} else "other"


def sample_styles(predictions: Path) -> dict[str, float]:
    """Over every temperature-1 sample of a predictions.jsonl: the share writing operations,
    the accuracy of each kind, the share with no answer, and the mean number of distinct
    answers among a question's samples."""
    kinds = {"operations": [0, 0], "numbers": [0, 0]}
    none = distinct = questions = 0
    why = {"name": 0, "syntax": 0, "other": 0}
    for line in predictions.read_text().splitlines():
        samples = json.loads(line).get("samples") or []
        questions += bool(samples)
        distinct += len({x["pred"] for x in samples if x["pred"] is not None})
        for x in samples:
            kind = "operations" if OPERATION.search(x["completion"]) else "numbers"
            kinds[kind][0] += 1
            kinds[kind][1] += bool(x["correct"])
            none += x["pred"] is None
            if x["pred"] is None:
                why[why_unanswered(x["completion"])] += 1
    n = sum(c for c, _ in kinds.values())

    def pct(a: int, b: int) -> float:
        return round(100 * a / b, 1) if b else 0.0

    return {"samples": n, "ops_share": pct(kinds["operations"][0], n),
            "ops_acc": pct(kinds["operations"][1], kinds["operations"][0]),
            "num_acc": pct(kinds["numbers"][1], kinds["numbers"][0]),
            "acc": pct(kinds["operations"][1] + kinds["numbers"][1], n),
            "no_answer": pct(none, n), "distinct": round(distinct / max(questions, 1), 2),
            "why": f"{why['name']} / {why['syntax']} / {why['other']}"}


def last_metrics(run: Path, keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each of ``keys`` in ``run``/reft/metrics.jsonl."""
    out: dict[str, float] = {}
    path = run / "reft" / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out.update({k: row[k] for k in keys if k in row})
    return out


def main(runs: list[str]) -> None:
    for run in runs:
        print(f"\n{run}, greedy programs:\n")
        print("| model | programs with operations | their top-1 | programs of numbers | their top-1 |")
        print("|---|---|---|---|---|")
        for method in ("warmup", "sft", "reft"):
            path = Path(run) / method / "eval" / "predictions.jsonl"
            if path.exists():
                s = styles(path)
                total = sum(n for n, _ in s.values())
                print(f"| {method} | {s['operations'][0]}/{total} | {s['operations'][1]} "
                      f"| {s['numbers'][0]}/{total} | {s['numbers'][1]} |")
        print(f"\n{run}, temperature-1 samples (what vote@k and rerank@k read):\n")
        print("| model | samples | with operations % | their accuracy | of numbers: accuracy "
              "| all: accuracy | no answer % | unanswered: undefined name / syntax error / other "
              "| distinct answers / question |")
        print("|---|---|---|---|---|---|---|---|---|")
        for method in ("warmup", "sft", "reft"):
            path = Path(run) / method / "eval" / "predictions.jsonl"
            if path.exists():
                s = sample_styles(path)
                print(f"| {method} | {s['samples']} | {s['ops_share']} | {s['ops_acc']} | {s['num_acc']} "
                      f"| {s['acc']} | {s['no_answer']} | {s['why']} | {s['distinct']} |")
        m = last_metrics(Path(run), ("policy/kl", "policy/entropy", "reward/accuracy"))
        if m:
            print("\nReFT's last step: " + ", ".join(f"{k} {v:.3g}" for k, v in m.items()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["runs/demo"])
