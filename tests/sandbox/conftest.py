"""Sandbox fixtures: one sandbox for the run, canary files, a secret in the environment, and
after every test using ``clean`` the check that nothing was left running."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from reft.sandbox import Sandbox
from tests.sandbox.sandbox_helpers import SECRET, SECRET_VAR, TIMEOUT_S, assert_no_strays, processes


@pytest.fixture(scope="session")
def secret_env():
    """A secret in the trainer's environment, set before any sandbox starts, and in the
    environment another root process was started with (readable in its /proc/PID/environ)."""
    os.environ[SECRET_VAR] = SECRET
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                              env={SECRET_VAR: SECRET})
    yield SECRET
    holder.kill()
    holder.wait()
    os.environ.pop(SECRET_VAR, None)


@pytest.fixture(scope="session")
def sandbox(secret_env):
    """One sandbox for the whole run, as a trainer would have (1 s timeout, 2 workers)."""
    with Sandbox(2, timeout_s=TIMEOUT_S) as sb:
        executors = sb.executor_pids()
        yield sb
    assert_no_strays([sb])  # closed: now nothing of it may be left
    assert not [p for p in processes() if p.pid in executors]


@pytest.fixture
def clean(sandbox):
    """The sandbox, checked for leftovers after the test; the trainer's state checked too."""
    def state():
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
        return os.getcwd(), env

    before = state()
    yield sandbox
    assert_no_strays([sandbox])
    assert state() == before


@dataclass
class Canaries:
    """Files a program must not change: one in a world-writable directory (mode 0666 file),
    one in an ordinary directory (0644 file)."""

    open_dir: Path
    closed_dir: Path

    def snapshot(self) -> dict:
        state = {}
        for d in (self.open_dir, self.closed_dir):
            for p in sorted(d.iterdir()):
                st = p.lstat()
                state[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, p.read_bytes())
            state[str(d)] = d.stat().st_mode
        return state


@pytest.fixture
def canaries():
    """Made under /tmp (not pytest's 0700 tree) so that the sandbox uid can reach them."""
    root = Path(tempfile.mkdtemp(prefix="reft-canary-", dir="/tmp"))
    root.chmod(0o755)
    open_dir, closed_dir = root / "open", root / "closed"
    open_dir.mkdir()
    closed_dir.mkdir()
    open_dir.chmod(0o777)
    closed_dir.chmod(0o755)
    for d, mode in ((open_dir, 0o666), (closed_dir, 0o644)):
        f = d / "canary.txt"
        f.write_text("canary\n")
        f.chmod(mode)
    c = Canaries(open_dir, closed_dir)
    before = c.snapshot()
    yield c
    assert c.snapshot() == before, "a program changed files outside its directory"
    for d in (open_dir, closed_dir):
        for p in d.iterdir():
            p.unlink()
        d.rmdir()
    root.rmdir()


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:8]
