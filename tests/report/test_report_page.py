"""What report.html shows a researcher: embedded curves with reference lines and smoothing,
example predictions, warnings for off diagnostics, the footer, and several seeds as one
table of mean ± sd."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reft.errors import UserError
from reft.report import write_report
from reft.report.examples import pick
from reft.report.plots import GROUPS, ema, ema_span, reference_lines
from reft.report.runs import load_run
from tests.report.conftest import QUESTIONS
from tests.report.test_report_files import _table_rows, check_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVAL_TOP1 = next(g for g in GROUPS if g.name == "eval_top1")


def _text(html_path: Path) -> str:
    return " ".join(" ".join(check_html(html_path).text).split())


def test_page_is_one_file_with_embedded_pngs(demo_dir: Path):
    written = write_report(demo_dir)
    html = written["report.html"].read_text(encoding="utf-8")
    assert 'src="plots/' not in html and "http://" not in html and "https://" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG_MAGIC
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing else to fetch


def test_sections_on_the_demo_fixture(demo_dir: Path):
    text = _text(write_report(demo_dir)["report.html"])
    for heading in ("Results", "Training curves", "Example predictions", "Stages", "Settings"):
        assert heading in text
    assert "Warnings" not in text  # the fixture's diagnostics are fine


def test_reference_lines_are_warmup_and_sft_top1(demo_dir: Path):
    run = load_run(demo_dir)
    refs = reference_lines(EVAL_TOP1, run)
    assert [(label, value) for label, value, _ in refs] == [
        ("Warm-up final top-1 (25.0%)", 0.25), ("SFT final top-1 (41.2%)", 0.4123)]
    assert "plots/eval_top1.png" in write_report(demo_dir)


def test_ema_is_smooth_and_unbiased():
    assert ema([3.0] * 5, 4) == pytest.approx([3.0] * 5)  # no pull toward 0 at the start
    noisy = [0.0, 1.0] * 20
    smooth = ema(noisy, ema_span(len(noisy)))
    assert max(smooth[10:]) - min(smooth[10:]) < 0.5 * (max(noisy) - min(noisy))
    assert ema_span(6) == 2 and ema_span(300) == 30 and ema_span(10_000) == 50


def test_example_predictions_per_method(demo_dir: Path):
    text = _text(write_report(demo_dir)["report.html"])
    section = text[text.index("Example predictions"):text.index("Stages")]
    # ReFT got q-0, q-1, q-3 right: 2 right then 1 wrong; SFT got only q-1 right
    assert "ReFT (2 right, 1 wrong)" in section and "SFT (1 right, 2 wrong)" in section
    assert QUESTIONS["q-0"][0] in section  # the question, looked up in the test file
    assert "reft works it out <step> for q-0." in section  # the completion, escaped
    assert "predicted 8, gold 8" in section and "predicted 9, gold 8" in section
    assert "right" in section and "wrong" in section


def test_pick_fills_in_from_the_other_kind(tmp_path: Path, builders):
    path = tmp_path / "p.jsonl"
    rows = [{"id": str(i), "correct": i in (4, 6)} for i in range(8)]
    builders.write_jsonl(path, rows)
    assert [r["id"] for r in pick(path, 3)] == ["4", "6", "0"]
    builders.write_jsonl(path, [{"id": str(i), "correct": False} for i in range(5)])
    assert [r["id"] for r in pick(path, 3)] == ["0", "1", "2"]


def test_question_missing_when_test_file_is_gone(demo_dir: Path):
    (demo_dir / "data" / "test.json").unlink()
    text = _text(write_report(demo_dir)["report.html"])
    assert "question not found" in text and QUESTIONS["q-0"][0] not in text


def test_footer_names_versions_commit_and_hardware(demo_dir: Path):
    html = write_report(demo_dir)["report.html"].read_text(encoding="utf-8")
    footer = html[html.index("<footer>"):html.index("</footer>")]
    from importlib.metadata import version

    from reft._version import __version__

    for name in ("torch", "transformers"):
        assert f"{name} {version(name)}" in footer
    assert f"reft {__version__}" in footer
    assert "git commit" in footer and "cores" in footer


def _bad_ppo_metrics(builders, ev: float = -0.3, kl: float = 0.5) -> list[dict]:
    rows = builders.ppo_metrics()
    for row in rows:
        row["value/explained_variance"], row["policy/kl"] = ev, kl
    return rows


def test_warnings_shown_when_diagnostics_are_off(tmp_path: Path, builders):
    run = builders.training_dir(tmp_path / "ppo", _bad_ppo_metrics(builders),
                                "kl_warn: 0.25\nseed: 1\n")
    written = write_report(run)
    text = _text(written["report.html"])
    assert "Warnings" in text
    assert "value/explained_variance stayed below 0 at all 6 logged steps" in text
    assert "policy/kl exceeded kl_warn = 0.25 at 6 of 6 logged steps" in text
    md = written["results.md"].read_text(encoding="utf-8")
    assert "## Warnings" in md and "kl_warn = 0.25" in md


def test_no_warnings_when_diagnostics_are_fine(tmp_path: Path, builders):
    rows = _bad_ppo_metrics(builders, kl=0.1)
    rows[-1]["value/explained_variance"] = 0.05  # below 0 most of the run, not all of it
    run = builders.training_dir(tmp_path / "ppo", rows, "kl_warn: 0.25\nseed: 1\n")
    written = write_report(run)
    assert "Warnings" not in _text(written["report.html"])
    assert "Warnings" not in written["results.md"].read_text(encoding="utf-8")


def test_kl_warn_defaults_to_the_ppo_config(tmp_path: Path, builders):
    run = builders.training_dir(tmp_path / "ppo", _bad_ppo_metrics(builders, ev=0.1, kl=25.0),
                                "seed: 1\n")
    assert "kl_warn = 20" in _text(write_report(run)["report.html"])


def test_pipeline_warnings_name_the_stage(demo_dir: Path, builders):
    builders.write_jsonl(demo_dir / "reft" / "metrics.jsonl",
                         _bad_ppo_metrics(builders, kl=0.01))
    text = _text(write_report(demo_dir)["report.html"])
    assert "ReFT: value/explained_variance stayed below 0" in text and "policy/kl" not in text


def _seed_runs(demo_dir: Path, top1s: list[tuple[float, float]]) -> Path:
    """Copies of the demo run under seeds/seed<i>, with (sft, reft) top-1 per seed."""
    root = demo_dir.parent / "seeds"
    for i, (sft, reft) in enumerate(top1s):
        run = root / f"seed{i}"
        shutil.copytree(demo_dir, run)
        results = json.loads((run / "results.json").read_text())
        results["seed"] = i
        results["methods"]["sft"]["top1"], results["methods"]["reft"]["top1"] = sft, reft
        results["methods"]["reft"]["pass@k"] = 0.6 + 0.1 * i
        (run / "results.json").write_text(json.dumps(results))
    return root


def test_folder_of_seed_runs_gives_mean_and_sd(demo_dir: Path):
    root = _seed_runs(demo_dir, [(0.40, 0.44), (0.42, 0.48), (0.44, 0.46)])
    written = write_report(root)
    assert written["results.md"] == root / "results.md"
    md = written["results.md"].read_text(encoding="utf-8")
    rows = _table_rows(md)
    assert rows[0] == ["Method", "Top-1", "Vote@8", "Rerank@8", "Pass@8"]
    assert ["SFT", "42.0 ± 2.0", "47.0 ± 0.0", "—", "—"] in rows
    assert ["ReFT", "46.0 ± 2.0", "50.0 ± 0.0", "52.0 ± 0.0", "70.0 ± 10.0"] in rows
    assert "seeds = 0, 1, 2 (mean ± sd over 3 runs)" in md
    # per-seed differences 4, 6, 2 points: mean 4, sd 2
    assert "ReFT − SFT (top-1): +4.0 points ± 2.0" in md
    assert ["ReFT", "44.0", "48.0", "46.0"] in rows  # the per-seed table
    text = _text(written["report.html"])
    assert "Top-1 per seed" in text and "46.0 ± 2.0" in text
    assert "Seed" in text and "seed0/reft" in text  # the stages of every seed


def test_list_of_seed_runs_needs_out(demo_dir: Path, tmp_path: Path):
    root = _seed_runs(demo_dir, [(0.40, 0.44), (0.42, 0.48)])
    runs = [root / "seed1", root / "seed0"]
    with pytest.raises(UserError, match="out"):
        write_report(runs)
    written = write_report(runs, out=tmp_path / "both")
    md = written["results.md"].read_text(encoding="utf-8")
    assert "seeds = 0, 1 (mean ± sd over 2 runs)" in md
    assert (tmp_path / "both" / "report.html").is_file() and (tmp_path / "both" / "plots").is_dir()


def test_seed_value_missing_in_one_run_says_n(demo_dir: Path):
    root = _seed_runs(demo_dir, [(0.40, 0.44), (0.42, 0.48)])
    results = json.loads((root / "seed1" / "results.json").read_text())
    del results["methods"]["warmup"]
    (root / "seed1" / "results.json").write_text(json.dumps(results))
    rows = _table_rows(write_report(root)["results.md"].read_text(encoding="utf-8"))
    assert ["Warm-up", "25.0 (n=1)", "—", "—", "—"] in rows


def test_cli_reports_a_folder_of_seeds(python: str, demo_dir: Path):
    root = _seed_runs(demo_dir, [(0.40, 0.44), (0.42, 0.48)])
    proc = subprocess.run([python, "-m", "reft", "report", str(root)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| ReFT | 46.0 ± 2.8 |" in proc.stdout and f"report: {root / 'report.html'}" in proc.stdout
