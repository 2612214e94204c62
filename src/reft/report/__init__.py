"""``reft report RUN_DIR``: rebuild results.md, report.html and plots/*.png from the
metrics and evaluation files of a demo/pipeline, training or evaluation directory, or of
several runs of one protocol with different seeds (a folder holding one run per seed, or
``write_report([run, run, ...], out=DIR)``), reported as mean ± sd.

Public API: ``results_table_md``, ``make_plots``, ``write_report``, ``load_report_run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reft.errors import UserError
from reft.report.files import atomic_write
from reft.report.plots import make_plots, plots_for
from reft.report.runs import Run, is_number, load_run
from reft.report.table import markdown_table, results_table_md

__all__ = ["make_plots", "results_table_md", "write_report", "load_report_run"]


def final_metrics(run: Run) -> tuple[list[str], list[list[str]]] | None:
    """For a single training run: the last logged value (and its step) of every metric."""
    if run.kind != "training" or not run.stages[0].metrics:
        return None
    last: dict[str, tuple[object, float]] = {}
    for row in run.stages[0].metrics:
        for key, value in row.items():
            if key not in ("step", "epoch") and is_number(value):
                last[key] = (row.get("step", "—"), value)
    rows = [[key, str(step), f"{value:.4g}"] for key, (step, value) in last.items()]
    return ["Metric", "Step", "Last value"], rows


def _results_md(run: Run, final: tuple[list[str], list[list[str]]] | None,
                warnings: list[str]) -> str:
    from reft.report.seeds import per_seed_cells

    title = f"# Results: {run.path.resolve().name}\n\n"
    text = title + results_table_md(run.results)
    if (per_seed := per_seed_cells(run)) is not None:
        text += "\n## Top-1 per seed\n\n" + markdown_table(*per_seed) + "\n"
    if warnings:
        text += "\n## Warnings\n\n" + "".join(f"- {w}\n" for w in warnings)
    if final and final[1]:
        text += "\n## Final training metrics\n\n" + markdown_table(*final) + "\n"
    return text


def load_report_run(run_dirs: str | Path | Sequence[str | Path],
                    out: str | Path | None = None) -> Run:
    """One run directory, a folder of runs (one per seed), or a list of runs (one per seed;
    ``out`` then names where the report goes)."""
    from reft.report.seeds import load_seed_runs, seed_run_dirs

    if isinstance(run_dirs, str | Path):
        path = Path(run_dirs)
        if seeds := seed_run_dirs(path):
            return load_seed_runs(seeds, out or path)
        return load_run(path)
    dirs = list(run_dirs)
    if len(dirs) == 1:
        return load_report_run(dirs[0], out)
    if out is None:
        raise UserError("a report over several runs needs a folder to go to (out=...)")
    return load_seed_runs(dirs, out)


def write_report(run_dirs: str | Path | Sequence[str | Path],
                 out: str | Path | None = None) -> dict[str, Path]:
    """Write ``results.md``, ``report.html`` and ``plots/*.png`` for a run directory (into
    it, or into ``out``), or for several runs of different seeds (a folder of them, or a
    list and ``out``).

    Returns the written files keyed by their path relative to the output folder
    (``"results.md"``, ``"report.html"``, ``"plots/reward.png"``, ...).
    Raises ``UserError`` for a missing directory or one with no run files.
    """
    from reft.report.diagnostics import warnings_for
    from reft.report.page import render_page

    run = load_report_run(run_dirs, out)
    dest = Path(out) if out is not None else run.path
    plots = plots_for(run, dest)
    final = final_metrics(run)
    md = _results_md(run, final, warnings_for(run))
    written = {
        "results.md": atomic_write(dest / "results.md", md),
        "report.html": atomic_write(dest / "report.html", render_page(run, plots, final)),
    }
    written.update({f"plots/{p.name}": p for p in plots})
    return written
