"""Shared fixtures. Real data lives in ../shared/data beside the repository (never copied in)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures"]

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REFT_SHARED_DATA", ROOT.parent / "shared" / "data"))


def pytest_configure(config) -> None:
    """Ctrl-C raises KeyboardInterrupt in this process and in the processes it starts, also
    when the suite was launched with SIGINT ignored (``cmd &`` from a script or ``nohup``:
    Python then installs no handler, and the ignored disposition passes to every child, so
    the tests of interrupted runs and of programs that signal themselves could not pass)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real GSM8K/SVAMP/MathQA files; skips the test when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set REFT_SHARED_DATA or put shared/ beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter running the tests, for CLI subprocesses (``python -m reft``)."""
    return sys.executable
