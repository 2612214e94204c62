"""``reft report RUN_DIR`` as a subprocess, and a browser rendering of report.html."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _reft(python: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "reft", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_report_demo_dir(python: str, demo_dir: Path):
    proc = _reft(python, "report", str(demo_dir))
    assert proc.returncode == 0, proc.stderr
    assert "| ReFT | 45.7 | 50.0 | 52.0 |" in proc.stdout
    assert "ReFT − SFT (top-1): +4.4 points" in proc.stdout
    assert f"report: {demo_dir / 'report.html'}" in proc.stdout
    assert (demo_dir / "report.html").is_file() and (demo_dir / "results.md").is_file()


def test_cli_report_missing_dir_is_one_line_exit_2(python: str, tmp_path: Path):
    proc = _reft(python, "report", str(tmp_path / "missing"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reft report: error:")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_report_html_renders_in_headless_chromium(demo_dir: Path, tmp_path: Path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium not on PATH (install Debian's 'chromium' to run this check)")
    from reft.report import write_report

    html = write_report(demo_dir)["report.html"]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1200,1600", html.resolve().as_uri()],
        capture_output=True, timeout=120, check=False,
    )
    assert shot.is_file(), "chromium wrote no screenshot"
    data = shot.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000  # a blank 1200x1600 page compresses to a few KB
