"""report.html: one self-contained HTML5 page (inline CSS, no scripts, no network).

The markup is also well-formed XML (every element closed, only numeric or XML
entities) so it can be checked with any XML parser. All text goes through
``html.escape``.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from reft._version import __version__
from reft.report.plots import GROUPS
from reft.report.runs import Run, display_name, method_order
from reft.report.table import caption, delta_line, duration, table_cells

TITLES = {group.name: group.title for group in GROUPS}
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.2rem; }
.path { color: #666; font-family: ui-monospace, monospace; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid #ddd; }
th { background: #f4f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.results tr.reft td { font-weight: 600; }
.caption { color: #555; font-size: .9rem; }
.delta { font-weight: 600; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
details { margin: .4rem 0; } summary { cursor: pointer; font-weight: 600; }
td.key { font-family: ui-monospace, monospace; font-size: .85rem; }
footer { margin-top: 3rem; color: #888; font-size: .8rem; }
"""


def _table(header: list[str], rows: list[list[str]], cls: str = "",
           row_classes: list[str] | None = None, text_cols: int = 1) -> str:
    """An HTML table; columns after the first ``text_cols`` are right-aligned numbers."""
    out = [f'<table class="{escape(cls)}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        tr_cls = row_classes[i] if row_classes else ""
        out.append(f'<tr class="{escape(tr_cls)}">' if tr_cls else "<tr>")
        out += [f"<td>{escape(c)}</td>" for c in row[:text_cols]]
        out += [f'<td class="num">{escape(c)}</td>' for c in row[text_cols:]]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _results_section(run: Run) -> str:
    header, rows = table_cells(run.results)
    parts = ["<h2>Results</h2>", f'<p class="caption">{escape(caption(run.results))}</p>']
    if not rows:
        return "".join(parts + ["<p>No evaluation results in this run.</p>"])
    # same order as table_cells; the ReFT row is emphasised
    classes = ["reft" if m == "reft" else "" for m in method_order(run.results["methods"])]
    parts.append(_table(header, rows, "results", classes))
    if (delta := delta_line(run.results)) is not None:
        parts.append(f'<p class="delta">{escape(delta)}</p>')
    return "".join(parts)


def _plots_section(plots: list[Path]) -> str:
    if not plots:
        return ""
    parts = ["<h2>Training curves</h2>"]
    for png in plots:
        rel = f"plots/{png.name}"
        title = TITLES.get(png.stem, png.stem.replace("_", " "))
        # the PNG carries its own title, so no <figcaption> repeating it
        parts.append(f'<figure><img src="{escape(rel)}" alt="{escape(title)}"/></figure>')
    return "".join(parts)


def _stages_section(run: Run, final_metrics: tuple[list[str], list[list[str]]] | None) -> str:
    parts = []
    if run.kind == "pipeline" and run.stages:
        rows = [[display_name(s.name), os.path.relpath(s.path, run.path),
                 str(len(s.metrics)), duration(s.wall_s) if s.wall_s is not None else "—"]
                for s in run.stages]
        header = ["Stage", "Run dir", "Log entries", "Wall time"]
        parts += ["<h2>Stages</h2>", _table(header, rows, text_cols=2)]
    if final_metrics and final_metrics[1]:
        parts += ["<h2>Final training metrics</h2>", _table(*final_metrics)]
    return "".join(parts)


def _settings_section(run: Run) -> str:
    if not run.settings:
        return ""
    parts = ["<h2>Settings</h2>"]
    for i, (title, flat) in enumerate(run.settings.items()):
        rows = "".join(f'<tr><td class="key">{escape(k)}</td><td>{escape(v)}</td></tr>'
                       for k, v in flat.items())
        open_attr = ' open="open"' if i == 0 else ""
        parts.append(f"<details{open_attr}><summary>{escape(title)}</summary>"
                     f"<table><tbody>{rows}</tbody></table></details>")
    return "".join(parts)


def render_page(run: Run, plots: list[Path],
                final_metrics: tuple[list[str], list[list[str]]] | None = None) -> str:
    """The whole report.html for ``run``; ``plots`` are PNGs under ``run.path/plots``."""
    title = f"ReFT report: {run.path.resolve().name}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="path">{escape(str(run.path))} ({escape(run.kind)} run)</p>',
        _results_section(run),
        _plots_section(plots),
        _stages_section(run, final_metrics),
        _settings_section(run),
        f"<footer>Generated by reft {escape(__version__)} (reft report).</footer>",
    ]
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8"/>',
        '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
        f"<title>{escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        *[part for part in body if part],
        "</body>",
        "</html>",
        "",
    ])
