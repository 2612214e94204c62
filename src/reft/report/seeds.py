"""Several runs of one protocol with different seeds, reported together.

``load_seed_runs`` reads each run (a demo/pipeline, training or evaluation directory) and
returns one ``Run`` of kind ``"seeds"`` whose ``results`` hold, per method and accuracy, the
mean over the runs that have it (``methods``) and its sample standard deviation and count
(``spread``), the seeds (``seeds``), and the ReFT − SFT top-1 difference's spread over the
seeds that have both (``delta_sd``, ``delta_n``). Its stages are every run's stages, each
tagged with its run's seed, so curves and diagnostics show all seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from reft.errors import UserError
from reft.report.runs import ACCURACY_KEYS, Run, display_name, is_number, load_run, method_order
from reft.report.table import percent


def seed_of(run: Run) -> object:
    """The run's seed (results.json / config.yaml), else its folder's name."""
    seed = run.results.get("seed")
    return seed if seed is not None else run.path.name


def _order(run: Run) -> tuple:
    """Numeric seeds in numeric order, then named ones."""
    seed = seed_of(run)
    return (0, seed, "") if is_number(seed) else (1, 0, str(seed))


def _sd(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def aggregate(runs: list[Run]) -> dict:
    """A results.json-shaped dict of means, with ``spread``, ``seeds`` and ``n_runs``."""
    names: list[str] = []
    for run in runs:
        names += [m for m in run.results.get("methods") or {} if m not in names]
    methods: dict[str, dict] = {}
    spread: dict[str, dict] = {}
    for name in names:
        scores = [run.results["methods"].get(name) for run in runs]
        scores = [s for s in scores if isinstance(s, dict)]
        methods[name], spread[name] = {}, {}
        for key in ACCURACY_KEYS:
            values = [float(s[key]) for s in scores if is_number(s.get(key))]
            if values:
                methods[name][key] = statistics.fmean(values)
                spread[name][key] = (_sd(values), len(values))
    results: dict = {"methods": methods, "spread": spread, "n_runs": len(runs),
                     "seeds": [seed_of(run) for run in runs]}
    for key in ("n_test", "k"):
        values = {run.results.get(key) for run in runs} - {None}
        if len(values) == 1:
            results[key] = values.pop()
        elif values and key == "n_test":  # k must agree: it names the columns
            results[key] = " / ".join(sorted(map(str, values)))
    walls = [run.results["wall_s"] for run in runs if is_number(run.results.get("wall_s"))]
    if walls:
        results["wall_s"] = sum(walls)
    deltas = [run.results["methods"]["reft"]["top1"] - run.results["methods"]["sft"]["top1"]
              for run in runs if _has_top1(run, "reft") and _has_top1(run, "sft")]
    if len(deltas) > 1:
        results["delta_sd"], results["delta_n"] = _sd(deltas), len(deltas)
    return results


def _has_top1(run: Run, method: str) -> bool:
    scores = (run.results.get("methods") or {}).get(method)
    return isinstance(scores, dict) and is_number(scores.get("top1"))


def load_seed_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Run:
    """The runs in ``run_dirs`` (one per seed) as one ``"seeds"`` run written to ``out``."""
    if not run_dirs:
        raise UserError("no run directories given")
    runs = sorted((load_run(d) for d in run_dirs), key=_order)
    kinds = {run.kind for run in runs}
    if len(kinds) > 1:
        raise UserError(f"cannot report {', '.join(sorted(kinds))} runs together: give runs of "
                        "one kind (e.g. one demo or pipeline run per seed)")
    stages = [replace(stage, seed=seed_of(run)) for run in runs for stage in run.stages]
    settings = {f"{title} (seed {seed_of(runs[0])})": flat
                for title, flat in runs[0].settings.items()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return Run(out, "seeds", aggregate(runs), stages, settings, seed_runs=runs)


def seed_run_dirs(path: Path) -> list[Path]:
    """When ``path`` is no run itself but holds whole runs (subfolders with ``results.json``,
    one per seed), those runs; else ``[]``."""
    own = ("results.json", "metrics.jsonl", "eval.json", "eval/eval.json")
    if not path.is_dir() or any((path / name).is_file() for name in own):
        return []
    children = sorted(p for p in path.iterdir() if p.is_dir())
    if any((p / "metrics.jsonl").is_file() for p in children):
        return []  # a pipeline still running: its stages, not seeds
    return [p for p in children if (p / "results.json").is_file()]


def per_seed_cells(run: Run, key: str = "top1") -> tuple[list[str], list[list[str]]] | None:
    """For a ``"seeds"`` run: one row per method, one ``key`` column per seed."""
    if not run.seed_runs:
        return None
    header = ["Method"] + [f"seed {seed_of(r)}" for r in run.seed_runs]
    rows = []
    for name in method_order(run.results.get("methods") or {}):
        cells = []
        for r in run.seed_runs:
            scores = (r.results.get("methods") or {}).get(name)
            cells.append(percent(scores.get(key) if isinstance(scores, dict) else None))
        rows.append([display_name(name)] + cells)
    return header, rows
