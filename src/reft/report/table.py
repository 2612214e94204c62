"""The paper-style results table (Top-1 / Vote@k / Rerank@k / Pass@k), as Markdown or cells;
over several seeds each cell is ``mean ± sd``."""

from __future__ import annotations

from reft.report.runs import display_name, is_number, method_order

COLUMNS = (("top1", "Top-1"), ("vote@k", "Vote@{k}"), ("rerank@k", "Rerank@{k}"),
           ("pass@k", "Pass@{k}"))
OPTIONAL = ("pass@k",)
"""Columns shown only when some method has a value (pass@k: from eval.json's samples)."""
MISSING = "—"


def percent(value: object) -> str:
    """A fraction in [0, 1] as a percentage with one decimal; "—" if not a number."""
    return f"{100 * value:.1f}" if is_number(value) else MISSING


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 12 s`` or ``2 h 05 min``."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:.3g} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _columns(methods: dict) -> list[tuple[str, str]]:
    scores = [m for m in methods.values() if isinstance(m, dict)]
    return [(key, title) for key, title in COLUMNS
            if key not in OPTIONAL or any(is_number(m.get(key)) for m in scores)]


def _cell(results: dict, method: str, key: str) -> str:
    """``45.7``, or ``45.7 ± 1.2`` over several seeds (``(n=2)`` when a seed lacks it)."""
    scores = results["methods"][method]
    value = scores.get(key) if isinstance(scores, dict) else None
    text = percent(value)
    spread = (results.get("spread") or {}).get(method, {}).get(key)
    if text == MISSING or not spread:
        return text
    sd, n = spread
    text += f" ± {100 * sd:.1f}" if sd is not None else ""
    return text + (f" (n={n})" if n < results.get("n_runs", n) else "")


def table_cells(results: dict) -> tuple[list[str], list[list[str]]]:
    """Header and rows of strings: one row per method, in paper order. Pass@k is a column
    only when some method has it; over several seeds a cell is ``mean ± sd``."""
    k = results.get("k")
    k_text = str(k) if k is not None else "k"
    methods = results.get("methods") or {}
    columns = _columns(methods)
    header = ["Method"] + [title.format(k=k_text) for _, title in columns]
    rows = [[display_name(name)] + [_cell(results, name, key) for key, _ in columns]
            for name in method_order(methods)]
    return header, rows


def caption(results: dict) -> str:
    """One line: what the numbers are and the run's n_test, k, seed and wall time."""
    parts = []
    if results.get("n_test") is not None:
        parts.append(f"n_test = {results['n_test']}")
    if results.get("k") is not None:
        parts.append(f"k = {results['k']}")
    if results.get("seeds"):
        seeds = ", ".join(str(seed) for seed in results["seeds"])
        parts.append(f"seeds = {seeds} (mean ± sd over {results.get('n_runs')} runs)")
    elif results.get("seed") is not None:
        parts.append(f"seed = {results['seed']}")
    if is_number(results.get("wall_s")):
        parts.append(f"wall time {duration(results['wall_s'])}")
    text = "Test accuracy (%)"
    return f"{text}; {', '.join(parts)}." if parts else f"{text}."


def delta_line(results: dict) -> str | None:
    """``ReFT − SFT (top-1): +X.X points`` when both methods have a top-1 score.

    The difference is taken before rounding, so it can differ by 0.1 from the
    difference of the rounded table entries.
    """
    methods = results.get("methods") or {}
    sft, reft = methods.get("sft"), methods.get("reft")
    if not (isinstance(sft, dict) and isinstance(reft, dict)):
        return None
    if not (is_number(sft.get("top1")) and is_number(reft.get("top1"))):
        return None
    points = round(100 * (reft["top1"] - sft["top1"]), 1) + 0.0  # + 0.0 turns -0.0 into 0.0
    text = f"ReFT − SFT (top-1): {points:+.1f} points"
    if is_number(results.get("delta_sd")):
        text += (f" ± {100 * results['delta_sd']:.1f} (mean ± sd of the per-seed differences, "
                 f"{results.get('delta_n')} seeds)")
    return text


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]], align: str = "r") -> str:
    """A GitHub-flavoured Markdown table; the first column is left-aligned."""
    rule = [":---"] + [("---:" if align == "r" else ":---")] * (len(header) - 1)
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(_md_cell(c) for c in line) + " |" for line in lines)


def results_table_md(results: dict) -> str:
    """The results table of a results.json-shaped dict as Markdown: a caption line,
    the table, and the ReFT − SFT top-1 difference when both are present."""
    header, rows = table_cells(results)
    if not rows:
        return f"{caption(results)}\n\nNo evaluation results in this run.\n"
    parts = [caption(results), markdown_table(header, rows)]
    if (delta := delta_line(results)) is not None:
        parts.append(delta)
    return "\n\n".join(parts) + "\n"
