"""Training curves as PNG files: one figure per metric group, one line per stage.

Uses matplotlib's object API with the Agg canvas directly (never pyplot), so no
display is needed and no global figure state is touched. Reward curves are drawn
smoothed (a debiased EMA) over the raw curve drawn faint; the held-out accuracy
curve carries the warm-up's and SFT's final top-1 as dashed reference lines. Over
several seeds each seed is a line, all of one method in the method's colour.
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
    smooth: bool = False
    """Draw an EMA of each line over the raw line drawn faint."""
    refs: tuple[str, ...] = ()
    """Methods whose final top-1 (from the results table) is a dashed horizontal line."""


GROUPS = (
    PlotGroup("reward", "Training reward",
              (("reward/mean", "mean reward"), ("reward/accuracy", "training accuracy")),
              smooth=True),
    PlotGroup("eval_top1", "Held-out accuracy", (("eval/top1", "top-1 accuracy"),),
              refs=("warmup", "sft")),
    PlotGroup("kl", "KL to the reference policy", (("policy/kl", "KL"),)),
    PlotGroup("sft_loss", "SFT loss", (("loss/nll", "cross-entropy loss"),)),
    PlotGroup("ppo_diagnostics", "PPO diagnostics", (
        ("loss/policy", "policy loss"), ("loss/value", "value loss"),
        ("policy/entropy", "entropy"), ("policy/clipfrac", "clip fraction"),
        ("value/explained_variance", "explained variance"),
        ("response/length", "response length"))),
)
DPI = 110


@dataclass(frozen=True)
class Line:
    color: str
    label: str
    xs: list[float]
    ys: list[float]


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


def ema_span(n: int) -> int:
    """The EMA span for a curve of ``n`` points: about a tenth of it, 2 to 50."""
    return min(50, max(2, n // 10))


def ema(values: list[float], span: int) -> list[float]:
    """Exponential moving average with weight ``2 / (span + 1)``, bias-corrected (the
    early points are not pulled toward 0)."""
    alpha = 2.0 / (span + 1)
    out, mean, weight = [], 0.0, 0.0
    for v in values:
        mean = (1 - alpha) * mean + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(mean / weight)
    return out


def _label(stage: Stage, run: Run) -> str:
    return display_name(stage.name) if run.kind in ("pipeline", "seeds") else stage.name


def method_colors(run: Run) -> dict[str, str]:
    """A colour per stage name, by first appearance, so a method keeps its colour across
    figures (and across seeds)."""
    names = list(dict.fromkeys(s.name for s in run.stages))
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def lines_for(run: Run, key: str) -> list[Line]:
    """One line per stage that logged ``key``; over several seeds, one legend entry per method."""
    colors = method_colors(run)
    found = [(s, *series(s.metrics, key)) for s in run.stages]
    found = [(s, xs, ys) for s, xs, ys in found if xs]
    lines, labelled = [], set()
    for stage, xs, ys in found:
        label = _label(stage, run)
        if run.kind == "seeds":
            n = sum(1 for s, _, _ in found if s.name == stage.name)
            label = "_nolegend_" if stage.name in labelled else f"{label} ({n} seeds)"
            labelled.add(stage.name)
        lines.append(Line(colors[stage.name], label, xs, ys))
    return lines


def _draw_line(ax, line: Line, smooth: bool) -> None:
    marker = "o" if len(line.xs) <= 20 else None
    if not smooth or len(line.xs) < 3:
        ax.plot(line.xs, line.ys, color=line.color, label=line.label, marker=marker, markersize=3)
        return
    ax.plot(line.xs, line.ys, color=line.color, alpha=0.25, linewidth=1, marker=marker,
            markersize=2, label="_nolegend_")
    span = ema_span(len(line.ys))
    label = line.label if line.label == "_nolegend_" else f"{line.label} (EMA {span})"
    ax.plot(line.xs, ema(line.ys, span), color=line.color, linewidth=2, label=label)


def reference_lines(group: PlotGroup, run: Run) -> list[tuple[str, float, str]]:
    """(label, value, colour) of the group's dashed reference lines: the final top-1 of
    each method in ``group.refs`` that the results table has."""
    colors = method_colors(run)
    methods = run.results.get("methods") or {}
    out = []
    for name in group.refs:
        scores = methods.get(name)
        top1 = scores.get("top1") if isinstance(scores, dict) else None
        if is_number(top1):
            label = f"{display_name(name)} final top-1 ({100 * top1:.1f}%)"
            out.append((label, float(top1), colors.get(name, "0.4")))
    return out


def render_group(group: PlotGroup, run: Run) -> bytes | None:
    """The group's figure as PNG bytes, or None when no stage logged any of its metrics."""
    panels = [(key, title, lines) for key, title in group.metrics
              if (lines := lines_for(run, key))]
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(4.6 * cols, 3.4 * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (key, title, lines) in zip(axes, panels, strict=False):
        for line in lines:
            _draw_line(ax, line, group.smooth)
        for label, value, color in reference_lines(group, run):
            ax.axhline(value, color=color, linestyle="--", linewidth=1.2, label=label)
        note = ", smoothed; raw faint" if group.smooth else ""
        ax.set_title(f"{title} ({key}{note})", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(group.title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plots_for(run: Run, out: Path | None = None) -> list[Path]:
    """Write ``plots/*.png`` for a loaded run into ``out`` (default: the run's folder);
    returns the files written."""
    written = []
    for group in GROUPS:
        png = render_group(group, run)
        if png is not None:
            path = (out or run.path) / "plots" / f"{group.name}.png"
            written.append(atomic_write(path, png))
    return written


def make_plots(run_dir: str | Path) -> list[Path]:
    """Write the training-curve PNGs of ``run_dir`` into ``run_dir/plots``; groups
    with no data are skipped. Returns the paths written."""
    return plots_for(load_run(run_dir))
