"""report.html: one self-contained HTML5 page (inline CSS, plots embedded as base64
``data:`` URIs, no scripts, no network), so the single file can be mailed or archived.

The markup is also well-formed XML (every element closed, only numeric or XML
entities) so it can be checked with any XML parser. All text goes through
``html.escape``.
"""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

from reft.report.diagnostics import warnings_for
from reft.report.environment import build_info
from reft.report.examples import MAX_CHARS, Shown, examples_for
from reft.report.plots import GROUPS
from reft.report.runs import Run, display_name, method_order
from reft.report.seeds import per_seed_cells
from reft.report.table import caption, delta_line, duration, table_cells

TITLES = {group.name: group.title for group in GROUPS}
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1100px; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { margin-top: 2rem; font-size: 1.2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.path { color: #666; font-family: ui-monospace, monospace; font-size: .9rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid #ddd; }
th { background: #f4f4f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.results tr.reft td { font-weight: 600; }
.caption { color: #555; font-size: .9rem; }
.delta { font-weight: 600; }
.warnings { background: #fff4e5; border-left: 4px solid #e67700; padding: .5rem 1rem; }
.warnings li { margin: .2rem 0; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
details { margin: .4rem 0; } summary { cursor: pointer; font-weight: 600; }
td.key { font-family: ui-monospace, monospace; font-size: .85rem; }
.example { border: 1px solid #e3e3e8; border-radius: 4px; padding: .4rem .8rem; margin: .5rem 0; }
.example.right { border-left: 4px solid #2b8a3e; } .example.wrong { border-left: 4px solid #c92a2a; }
.verdict { font-weight: 600; } .right .verdict { color: #2b8a3e; } .wrong .verdict { color: #c92a2a; }
pre { background: #f7f7f9; padding: .5rem; overflow-x: auto; font-size: .85rem; white-space: pre-wrap; }
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
    if (per_seed := per_seed_cells(run)) is not None:
        parts += ["<h3>Top-1 per seed</h3>", _table(*per_seed)]
    return "".join(parts)


def _warnings_section(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<h2>Warnings</h2><div class="warnings"><ul>{items}</ul></div>'


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _plots_section(plots: list[Path]) -> str:
    if not plots:
        return ""
    parts = ["<h2>Training curves</h2>"]
    for png in plots:
        title = TITLES.get(png.stem, png.stem.replace("_", " "))
        # the PNG carries its own title, so no <figcaption> repeating it
        parts.append(f'<figure><img src="{_data_uri(png)}" alt="{escape(title)}"/></figure>')
    return "".join(parts)


def _printable(text: str) -> str:
    """Text without the control characters XML forbids (model output can hold them)."""
    return "".join(c for c in text if c in "\n\t" or ord(c) >= 32)


def _example(ex: Shown) -> str:
    verdict = "right" if ex.correct else "wrong"
    completion = full = _printable(ex.completion)
    if len(full) > MAX_CHARS:
        completion = full[:MAX_CHARS] + f"\n[… {len(full) - MAX_CHARS} more characters]"
    facts = f"predicted {ex.pred if ex.pred is not None else '(no answer)'}, gold {ex.gold or '—'}"
    question = ex.question or "(question not found: the test file is not on this machine)"
    return (f'<div class="example {verdict}"><p><span class="verdict">{verdict}</span> · '
            f"{escape(ex.id)} · {escape(_printable(facts))}</p><p>{escape(question)}</p>"
            f"<pre>{escape(completion)}</pre></div>")


def _examples_section(run: Run) -> str:
    found = examples_for(run)
    if not found:
        return ""
    note = " (first seed)" if run.kind == "seeds" else ""
    parts = ["<h2>Example predictions</h2>",
             f'<p class="caption">Greedy answers from each evaluation\'s predictions.jsonl{note}: '
             "the first right ones, then the first wrong ones, in test-set order.</p>"]
    for i, (label, shown) in enumerate(found):
        open_attr = ' open="open"' if i == 0 else ""
        right = sum(ex.correct for ex in shown)
        parts.append(f"<details{open_attr}><summary>{escape(label)} ({right} right, "
                     f"{len(shown) - right} wrong)</summary>"
                     + "".join(_example(ex) for ex in shown) + "</details>")
    return "".join(parts)


def _stages_section(run: Run, final_metrics: tuple[list[str], list[list[str]]] | None) -> str:
    parts = []
    if run.kind in ("pipeline", "seeds") and run.stages:
        seeds = run.kind == "seeds"
        rows = [[display_name(s.name)] + ([str(s.seed)] if seeds else [])
                + [os.path.relpath(s.path, run.path), str(len(s.metrics)),
                   duration(s.wall_s) if s.wall_s is not None else "—"] for s in run.stages]
        header = ["Stage"] + (["Seed"] if seeds else []) + ["Run dir", "Log entries", "Wall time"]
        parts += ["<h2>Stages</h2>", _table(header, rows, text_cols=3 if seeds else 2)]
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


def _footer() -> str:
    info = build_info()
    versions = ", ".join(f"{name} {info[name]}" for name in ("reft", "torch", "transformers"))
    return (f"<footer>Generated by reft report with {escape(versions)}; git commit "
            f"{escape(info['git'])}; built on {escape(info['hardware'])}.</footer>")


def render_page(run: Run, plots: list[Path],
                final_metrics: tuple[list[str], list[list[str]]] | None = None) -> str:
    """The whole report.html for ``run``; ``plots`` are PNG files, embedded in the page."""
    title = f"ReFT report: {run.path.resolve().name}"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="path">{escape(str(run.path))} ({escape(run.kind)} run)</p>',
        _warnings_section(warnings_for(run)),
        _results_section(run),
        _plots_section(plots),
        _examples_section(run),
        _stages_section(run, final_metrics),
        _settings_section(run),
        _footer(),
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
