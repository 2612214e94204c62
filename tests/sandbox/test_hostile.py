"""Every hostile program gets a result within its timeout, beside an innocent program that
still gets its right answer; the trainer (this process), the files outside the sandbox, the
secrets and the network are untouched; nothing is left running (the ``clean`` fixture)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time

import pytest

from reft.sandbox import ProgramResult
from tests.sandbox.sandbox_corpus import CASES, Case
from tests.sandbox.sandbox_helpers import SECRET, SECRET_VAR, TIMEOUT_S

INNOCENT = "import math\n\ndef solution():\n    return math.floor(6.5) * 7\n"
MARGIN_S = 1.5  # beyond the timeout: dispatch, kill, reap, sweep

# Layers a case needs beyond a uid of its own; where the kernel lacks them the case is skipped
# (the README lists these as what is not covered there).
NEEDS = {
    "landlock": {"overwrite-open-canary", "new-file-in-open-dir", "delete-canaries",
                 "chmod-rename-canary", "write-tmp", "symlink-out", "subprocess", "execv",
                 "os-system", "ctypes-system"},
    "network_namespace": {"udp-send", "tcp-connect"},
    "seccomp": {"unix-socket", "user-namespace", "io-uring"},
}


@pytest.fixture
def listeners():
    """A TCP listener and a UDP socket on 127.0.0.1, and a unix socket anyone may connect to
    (mode 0777 in a world-readable directory); nothing may reach them."""
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    folder = tempfile.mkdtemp(prefix="reft-unix-", dir="/tmp")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "s")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(path)
    os.chmod(path, 0o777)
    unix.listen()
    for s in (tcp, udp, unix):
        s.setblocking(False)
    yield tcp.getsockname()[1], udp.getsockname()[1], path
    # local sockets deliver at once: a connection or datagram would be queued by now
    for receive in (tcp.accept, lambda: udp.recvfrom(100), unix.accept):
        with pytest.raises(BlockingIOError):
            receive()
    for s in (tcp, udp, unix):
        s.close()
    shutil.rmtree(folder)


@pytest.fixture
def trainer_signals():
    """Count SIGUSR1 reaching this process (a program aiming at the trainer)."""
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    yield got
    signal.signal(signal.SIGUSR1, old)
    assert not got, "a program signalled the trainer"


def render(case: Case, token: str, canaries, ports) -> str:
    subs = {"@TOKEN@": token, "@OPEN@": str(canaries.open_dir), "@CLOSED@": str(canaries.closed_dir),
            "@PORT@": str(ports[0]), "@UDP@": str(ports[1]), "@UNIX@": ports[2],
            "@TRAINER@": str(os.getpid()),
            "@VAR@": SECRET_VAR}
    program = case.program
    for key, value in subs.items():
        program = program.replace(key, value)
    return program


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile(case, clean, canaries, listeners, trainer_signals, token):
    for layer, ids in NEEDS.items():
        if case.id in ids and not clean.protections[layer]:
            pytest.skip(f"needs {layer}, not available here")
    executors = clean.executor_pids()
    start = time.monotonic()
    hostile, innocent = clean.run([render(case, token, canaries, listeners), INNOCENT])
    elapsed = time.monotonic() - start
    assert innocent == ProgramResult(42.0)
    assert case.accepts(hostile), hostile
    assert elapsed < TIMEOUT_S + MARGIN_S
    assert SECRET not in str(hostile.value) and SECRET not in str(hostile.error)
    assert not os.path.exists(f"/tmp/pwned-{token}")
    assert clean.executor_pids() == executors and clean.restarts == 0


def test_corpus_is_broad():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


POISON = """
import builtins, math, sys
def solution():
    math.floor = lambda x: -1
    math.pi = 3
    builtins.len = lambda x: -1
    builtins.int = str
    sys.modules['fractions'] = None
    return 1
"""
USES_POISONED = """
import math
from fractions import Fraction
def solution():
    return math.floor(2.5) + len([1, 2]) + int('3') + float(Fraction(1, 2)) + math.pi
"""


def test_poisoning_does_not_reach_later_programs(clean):
    expected = 2 + 2 + 3 + 0.5 + 3.141592653589793
    first = clean.run([POISON] + [USES_POISONED] * 3)  # the poisoner's own result: anything
    assert all(r.value == pytest.approx(expected) for r in first[1:])
    assert all(r.value == pytest.approx(expected) for r in clean.run([USES_POISONED] * 2))


LITTER = """
import os
def solution():
    for i in range(100):
        open(f'f{i}', 'w').write('x' * 1000)
    path = 'deep'
    for i in range(100):
        os.mkdir(path)
        path += '/d'
    os.chmod('deep', 0)
    os.symlink('/etc/passwd', 'link')
    return len(os.listdir('.'))
"""
LOOK = "import os\n\ndef solution():\n    return str(os.listdir('.')) + os.getcwd()[-6:]\n"


def test_each_program_starts_in_an_empty_directory(clean):
    littered = clean.run([LITTER, LITTER], timeout_s=10)  # file creation is slow on some disks
    assert littered == [ProgramResult(102.0)] * 2
    looks = clean.run([LOOK] * 4)
    assert all(r.value.startswith("[]") for r in looks), looks


def test_sibling_cannot_touch_sibling(clean):
    """Programs running side by side have different uids: kill(-1) reaches neither the other
    program nor the executor."""
    killer = "import os, time\n\ndef solution():\n    for _ in range(50):\n" \
             "        os.kill(-1, 9)\n        time.sleep(0.01)\n    return 1\n"
    sleeper = "import time\n\ndef solution():\n    time.sleep(0.3)\n    return 2\n"
    results = clean.run([killer, sleeper, sleeper])
    assert results[1:] == [ProgramResult(2.0)] * 2
    assert clean.restarts == 0
