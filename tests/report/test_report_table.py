"""The paper-style results table: ordering, percentages, missing cells, caption, delta."""

from __future__ import annotations

from reft.report import results_table_md
from reft.report.table import delta_line, duration, table_cells


def _rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_rows_in_paper_order_with_unknown_methods_last():
    results = {"methods": {"custom": {"top1": 0.1}, "reft": {"top1": 0.5}, "online_st": {},
                           "sft": {"top1": 0.4}, "warmup": {"top1": 0.2},
                           "offline_st": {"top1": 0.3}}}
    _, rows = table_cells(results)
    assert [r[0] for r in rows] == ["Warm-up", "SFT", "Offline self-training",
                                    "Online self-training", "ReFT", "custom"]


def test_percentages_one_decimal_and_dash_for_missing():
    md = results_table_md({"methods": {"sft": {"top1": 0.41234, "vote@k": None},
                                       "reft": {"top1": 0.45678, "vote@k": 0.5,
                                                "rerank@k": 1.0}}, "k": 8})
    header, _rule, sft, reft = _rows(md)
    assert header == ["Method", "Top-1", "Vote@8", "Rerank@8"]
    assert sft == ["SFT", "41.2", "—", "—"]  # 41.234 -> 41.2
    assert reft == ["ReFT", "45.7", "50.0", "100.0"]  # 45.678 -> 45.7


def test_header_says_k_when_unknown():
    header, _ = table_cells({"methods": {"sft": {"top1": 0.1}}})
    assert header == ["Method", "Top-1", "Vote@k", "Rerank@k"]


def test_caption_has_run_facts():
    md = results_table_md({"methods": {"sft": {"top1": 0.1}}, "n_test": 500, "k": 16,
                           "seed": 0, "wall_s": 192.4})
    first = md.splitlines()[0]
    assert "n_test = 500" in first and "k = 16" in first and "seed = 0" in first
    assert "3 min 12 s" in first


def test_delta_line_positive_and_negative():
    # (0.4567 - 0.4123) * 100 = 4.44 -> +4.4
    up = {"methods": {"sft": {"top1": 0.4123}, "reft": {"top1": 0.4567}}}
    assert delta_line(up) == "ReFT − SFT (top-1): +4.4 points"
    assert "ReFT − SFT (top-1): +4.4 points" in results_table_md(up)
    down = {"methods": {"sft": {"top1": 0.5}, "reft": {"top1": 0.45}}}
    assert delta_line(down) == "ReFT − SFT (top-1): -5.0 points"
    same = {"methods": {"sft": {"top1": 0.3}, "reft": {"top1": 0.3}}}
    assert delta_line(same) == "ReFT − SFT (top-1): +0.0 points"


def test_no_delta_without_both_methods():
    assert delta_line({"methods": {"reft": {"top1": 0.4}}}) is None
    assert delta_line({"methods": {"sft": {"top1": 0.4}, "reft": {"vote@k": 0.4}}}) is None
    assert "points" not in results_table_md({"methods": {"reft": {"top1": 0.4}}})


def test_no_methods_is_a_sentence_not_an_empty_table():
    md = results_table_md({"methods": {}})
    assert "No evaluation results" in md and "|" not in md


def test_pipe_in_method_name_is_escaped():
    md = results_table_md({"methods": {"a|b": {"top1": 0.5}}})
    assert "a\\|b" in md


def test_duration_formats():
    assert duration(42.0) == "42 s"
    assert duration(3.25) == "3.25 s"
    assert duration(192.4) == "3 min 12 s"
    assert duration(3 * 3600 + 5 * 60) == "3 h 05 min"


def test_pass_at_k_column_only_when_some_method_has_it():
    header, rows = table_cells({"methods": {"sft": {"top1": 0.4, "pass@k": 0.7},
                                            "reft": {"top1": 0.5}}, "k": 4})
    assert header == ["Method", "Top-1", "Vote@4", "Rerank@4", "Pass@4"]
    assert rows == [["SFT", "40.0", "—", "—", "70.0"], ["ReFT", "50.0", "—", "—", "—"]]


def test_spread_cells_and_seed_caption():
    results = {"methods": {"reft": {"top1": 0.5, "vote@k": 0.6}}, "n_runs": 3,
               "spread": {"reft": {"top1": (0.0123, 3), "vote@k": (None, 1)}},
               "seeds": [0, 1, 2], "delta_sd": 0.02, "delta_n": 3}
    _, rows = table_cells(results)
    assert rows == [["ReFT", "50.0 ± 1.2", "60.0 (n=1)", "—"]]
    md = results_table_md(results)
    assert "seeds = 0, 1, 2 (mean ± sd over 3 runs)" in md and "seed =" not in md
