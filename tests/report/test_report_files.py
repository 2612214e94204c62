"""write_report / make_plots on fake demo, training and eval directories."""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reft.errors import UserError
from reft.report import make_plots, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}


class _Checker(HTMLParser):
    """Checks that every non-void tag is closed in order; collects <img src> and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def check_html(path: Path) -> _Checker:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    ET.fromstring(text.split("\n", 1)[1])  # the markup is also well-formed XML
    return checker


DATA_URI = "data:image/png;base64,"


def assert_images_embedded(run: Path, checker: _Checker) -> list[bytes]:
    """Every <img> is a PNG inside the page (a data URI), none a file beside it; the same
    PNGs are also written to plots/."""
    assert checker.images, "the report shows no plots"
    pngs = []
    for src in checker.images:
        assert src.startswith(DATA_URI), src[:40]
        png = base64.b64decode(src[len(DATA_URI):], validate=True)
        assert png[:8] == PNG_MAGIC
        pngs.append(png)
    on_disk = {p.read_bytes() for p in (run / "plots").glob("*.png")}
    assert set(pngs) <= on_disk
    return pngs


def _table_rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_demo_dir_results_md(demo_dir: Path):
    written = write_report(demo_dir)
    assert written["results.md"] == demo_dir / "results.md"
    md = (demo_dir / "results.md").read_text(encoding="utf-8")
    rows = _table_rows(md)
    assert rows[0] == ["Method", "Top-1", "Vote@8", "Rerank@8"]
    assert rows[2:] == [
        ["Warm-up", "25.0", "—", "—"],
        ["SFT", "41.2", "47.0", "—"],
        ["Offline self-training", "43.0", "48.0", "—"],
        ["ReFT", "45.7", "50.0", "52.0"],
    ]
    # (0.4567 - 0.4123) * 100 = 4.44
    assert "ReFT − SFT (top-1): +4.4 points" in md
    assert "n_test = 200" in md and "seed = 7" in md and "k = 8" in md


def test_demo_dir_html_and_plots(demo_dir: Path):
    written = write_report(demo_dir)
    checker = check_html(written["report.html"])
    plots = [name for name in written if name.startswith("plots/")]
    assert len(assert_images_embedded(demo_dir, checker)) == len(plots)
    assert {"plots/reward.png", "plots/eval_top1.png", "plots/kl.png", "plots/sft_loss.png"
            } <= set(written)
    assert 'src="plots/' not in written["report.html"].read_text(encoding="utf-8")
    text = " ".join(checker.text)
    assert "ReFT − SFT (top-1): +4.4 points" in text
    assert "kl_coef" in text  # the ReFT stage's config.yaml is in the settings
    assert {"title", "table", "img"} <= set(checker.tags)


def test_make_plots_skips_groups_without_data(tmp_path: Path, builders):
    run = builders.training_dir(tmp_path / "sft_only", builders.sft_metrics(), "lr: 1.0e-05\n")
    plots = make_plots(run)
    assert [p.name for p in plots] == ["sft_loss.png"]
    assert plots[0].read_bytes()[:8] == PNG_MAGIC


def test_single_ppo_training_dir(ppo_dir: Path):
    written = write_report(ppo_dir)
    md = written["results.md"].read_text(encoding="utf-8")
    # eval/eval.json gives the table row; k and n come from it
    # pass@k is a column because eval.json has it
    assert ["Method", "Top-1", "Vote@4", "Rerank@4", "Pass@4"] in _table_rows(md)
    assert ["ppo_run", "34.0", "40.0", "—", "60.0"] in _table_rows(md)
    assert "n_test = 50" in md and "k = 4" in md and "seed = 3" in md
    assert "Final training metrics" in md and "reward/mean" in md
    checker = check_html(written["report.html"])
    assert_images_embedded(ppo_dir, checker)
    assert "plots/sft_loss.png" not in written


def test_periodic_validation_top1_is_not_reported_as_test_accuracy(tmp_path: Path, builders):
    rows = [{"step": 1, "reward/mean": 0.1}, {"step": 2, "eval/top1": 0.25},
            {"step": 4, "eval/top1": 0.375}]
    run = builders.training_dir(tmp_path / "reft", rows, "seed: 1\n")
    md = write_report(run)["results.md"].read_text(encoding="utf-8")
    assert not any(r[0] == "ReFT" for r in _table_rows(md))  # no test-accuracy row
    assert "eval/top1" in md and "0.375" in md  # among the final training metrics


def test_eval_dir(tmp_path: Path, builders):
    run = tmp_path / "eval_out"
    run.mkdir()
    (run / "eval.json").write_text(json.dumps(
        {"n": 10, "top1": 0.5, "vote@k": 0.6, "pass@k": 0.9, "rerank@k": 0.7, "k": 5,
         "settings": {"model": "m", "temperature": 1.0}}), encoding="utf-8")
    builders.write_jsonl(run / "predictions.jsonl", [{"id": "1", "pred": "3", "correct": True}])
    written = write_report(run)
    rows = _table_rows(written["results.md"].read_text())
    assert ["eval_out", "50.0", "60.0", "70.0", "90.0"] in rows
    checker = check_html(written["report.html"])
    assert checker.images == [] and "temperature" in " ".join(checker.text)


def test_pipeline_without_results_json(demo_dir: Path):
    (demo_dir / "results.json").unlink()
    md = write_report(demo_dir)["results.md"].read_text(encoding="utf-8")
    # rows come from each stage's last eval/top1
    assert [r[0] for r in _table_rows(md)[2:]] == ["SFT", "ReFT"]


def test_text_is_escaped(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(
        {"methods": {"<script>alert(1)</script>": {"top1": 0.5}}, "seed": "a & b"}))
    written = write_report(run)
    html = written["report.html"].read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;" in html
    check_html(written["report.html"])


def test_truncated_last_metrics_line_is_tolerated(tmp_path: Path, builders):
    run = builders.training_dir(tmp_path / "sft", builders.sft_metrics(3), "seed: 0\n")
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 4, "lo')
    assert "plots/sft_loss.png" in write_report(run)


def test_broken_middle_metrics_line_is_user_error(tmp_path: Path, builders):
    run = builders.training_dir(tmp_path / "sft", builders.sft_metrics(3), "seed: 0\n")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(1, "{oops")
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="row 2"):
        write_report(run)


def test_missing_dir_is_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="not found"):
        write_report(tmp_path / "nope")


def test_unrecognised_dir_is_user_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a reft run directory"):
        write_report(tmp_path)


def test_malformed_results_json_is_user_error(tmp_path: Path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="results.json"):
        write_report(tmp_path)


def test_rewrite_is_idempotent_and_leaves_no_temp_files(demo_dir: Path):
    first = write_report(demo_dir)["results.md"].read_text()
    second = write_report(demo_dir)["results.md"].read_text()
    assert first == second
    leftovers = [p for p in demo_dir.rglob("*.tmp")]
    assert leftovers == []
