"""``reft report RUN_DIR``: rebuild results.md, report.html and plots/*.png from the
metrics and evaluation files of a demo/pipeline, training or evaluation directory.

Public API: ``results_table_md``, ``make_plots``, ``write_report``, ``main``.
"""

from __future__ import annotations

from pathlib import Path

from reft.report.files import atomic_write
from reft.report.plots import make_plots, plots_for
from reft.report.runs import Run, is_number, load_run
from reft.report.table import markdown_table, results_table_md

__all__ = ["make_plots", "results_table_md", "write_report", "main"]


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


def _results_md(run: Run, final: tuple[list[str], list[list[str]]] | None) -> str:
    title = f"# Results: {run.path.resolve().name}\n\n"
    text = title + results_table_md(run.results)
    if final and final[1]:
        text += "\n## Final training metrics\n\n" + markdown_table(*final) + "\n"
    return text


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write ``results.md``, ``report.html`` and ``plots/*.png`` into ``run_dir``.

    Returns the written files keyed by their path relative to ``run_dir``
    (``"results.md"``, ``"report.html"``, ``"plots/reward.png"``, ...).
    Raises ``UserError`` for a missing directory or one with no run files.
    """
    from reft.report.page import render_page

    run = load_run(run_dir)
    plots = plots_for(run)
    final = final_metrics(run)
    written = {
        "results.md": atomic_write(run.path / "results.md", _results_md(run, final)),
        "report.html": atomic_write(run.path / "report.html", render_page(run, plots, final)),
    }
    written.update({f"plots/{p.name}": p for p in plots})
    return written
