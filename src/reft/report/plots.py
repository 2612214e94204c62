"""Training curves as PNG files: one figure per metric group, one line per stage.

Uses matplotlib's object API with the Agg canvas directly (never pyplot), so no
display is needed and no global figure state is touched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from reft.report.files import atomic_write
from reft.report.runs import Run, Stage, display_name, is_number, load_run


@dataclass(frozen=True)
class PlotGroup:
    name: str
    """File stem: ``plots/{name}.png``."""
    title: str
    metrics: tuple[tuple[str, str], ...]
    """(metrics.jsonl key, axis title) per panel."""


GROUPS = (
    PlotGroup("reward", "Training reward",
              (("reward/mean", "mean reward"), ("reward/accuracy", "training accuracy"))),
    PlotGroup("eval_top1", "Held-out accuracy", (("eval/top1", "top-1 accuracy"),)),
    PlotGroup("kl", "KL to the reference policy", (("policy/kl", "KL"),)),
    PlotGroup("sft_loss", "SFT loss", (("loss/nll", "cross-entropy loss"),)),
    PlotGroup("ppo_diagnostics", "PPO diagnostics", (
        ("loss/policy", "policy loss"), ("loss/value", "value loss"),
        ("policy/entropy", "entropy"), ("policy/clipfrac", "clip fraction"),
        ("value/explained_variance", "explained variance"),
        ("response/length", "response length"))),
)
DPI = 110


def series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) for the rows that logged a number under ``key``; the row
    index stands in for a missing ``step``."""
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if is_number(value):
            step = row.get("step")
            xs.append(float(step) if is_number(step) else float(i))
            ys.append(float(value))
    return xs, ys


def _label(stage: Stage, run: Run) -> str:
    return display_name(stage.name) if run.kind == "pipeline" else stage.name


def render_group(group: PlotGroup, run: Run) -> bytes | None:
    """The group's figure as PNG bytes, or None when no stage logged any of its metrics."""
    panels = []
    for key, title in group.metrics:
        # colour by stage index, so a stage keeps its colour across figures
        lines = [(f"C{i % 10}", _label(s, run), *series(s.metrics, key))
                 for i, s in enumerate(run.stages)]
        lines = [line for line in lines if line[2]]
        if lines:
            panels.append((key, title, lines))
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (key, title, lines) in zip(axes, panels, strict=False):
        for color, label, xs, ys in lines:
            ax.plot(xs, ys, color=color, label=label, marker="o" if len(xs) <= 20 else None,
                    markersize=3)
        ax.set_title(f"{title} ({key})", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(group.title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plots_for(run: Run) -> list[Path]:
    """Write ``plots/*.png`` for a loaded run; returns the files written."""
    written = []
    for group in GROUPS:
        png = render_group(group, run)
        if png is not None:
            written.append(atomic_write(run.path / "plots" / f"{group.name}.png", png))
    return written


def make_plots(run_dir: str | Path) -> list[Path]:
    """Write the training-curve PNGs of ``run_dir`` into ``run_dir/plots``; groups
    with no data are skipped. Returns the paths written."""
    return plots_for(load_run(run_dir))
