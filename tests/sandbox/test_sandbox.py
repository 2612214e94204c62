"""The Sandbox API: order, limits, isolation as seen from inside, restarts, and the
unprivileged mode (acted out by an executor that drops to uid 65533 after setting up)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import reft.sandbox
from reft.sandbox import ProgramResult, Sandbox, run_programs
from tests.sandbox.sandbox_helpers import assert_no_strays, processes, strays


def prog(body: str, header: str = "") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{header}\n\ndef solution():\n{lines}\n"


def test_results_in_order_one_per_program(clean):
    programs = [prog(f"return {i} * 2") for i in range(25)] + [prog("return 1 / 0")]
    results = clean.run(programs)
    assert [r.value for r in results[:25]] == [float(i * 2) for i in range(25)]
    assert results[25] == ProgramResult(None, "exception: ZeroDivisionError")
    assert clean.run([]) == []


def test_imports_helpers_and_values(clean):
    program = ("import math\nfrom fractions import Fraction\nimport itertools, statistics\n\n"
               "def helper(x):\n    return x + 1\n\n"
               "def solution():\n    return helper(math.floor(2.5)) + float(Fraction(1, 2))"
               " + statistics.mean([1, 2, 3])\n")
    assert clean.run([program]) == [ProgramResult(5.5)]
    assert clean.run([prog("return 'é' * 300")])[0].value == "é" * 100
    assert clean.run([prog("return True")]) == [ProgramResult(1.0)]


def test_sympy_programs_run_on_the_preloaded_executor(clean):
    preloaded = "import sys\nready = 'sympy' in sys.modules\nimport sympy\n"
    results = clean.run([prog("return ready", preloaded),
                         prog("return sympy.Rational(1, 3) + sympy.sqrt(4)", "import sympy"),
                         prog("return ('sym' + 'py') in sys.modules", "import sys")])
    assert results[0] == ProgramResult(1.0)  # no sympy import per program
    assert results[1].value == pytest.approx(7 / 3)
    assert results[2] == ProgramResult(0.0)  # the lean executor never imported it


def test_lazy_submodules_of_loaded_packages(clean):
    """Imports go through the executor's descriptors, packages loaded before included, so a
    Python installed where the sandbox uid cannot look (pyenv under /root) still works."""
    results = clean.run([prog("return 'bücher.de'.encode('idna').decode()"),
                         prog("return float(units.convert_to(units.kilometer, units.meter) "
                              "/ units.meter)", "import sympy.physics.units as units"),
                         prog("return statistics.median([3, 1, 2])", "import statistics")],
                        timeout_s=10)  # sympy.physics is a heavy import on a busy machine
    assert results == [ProgramResult("xn--bcher-kva.de"), ProgramResult(1000.0),
                       ProgramResult(2.0)]


def test_numpy_results(clean):
    result = clean.run([prog("return np.float64(2.5) + np.int64(1)", "import numpy as np")])
    assert result == [ProgramResult(3.5)]


def test_the_child_sees_a_locked_down_world(clean):
    program = prog("""
st = os.fstat(0)
return ','.join([str(os.getuid() == os.getgid()), str(os.getgroups()), str(len(os.environ)),
                 str(st.st_rdev == os.stat('/dev/null').st_rdev), os.getcwd().rsplit('/', 1)[1],
                 str(os.getpgid(0) == os.getpid())])
""", "import os")
    result = clean.run([program])[0]
    assert result.value.split(",")[:4] == ["True", "[]", "0", "True"]
    assert result.value.split(",")[5] == "True"
    uid = clean.run([prog("return os.getuid()", "import os")])[0].value
    if clean.protections["root"]:
        assert uid != 0 and uid >= clean.protections["uid"]


def test_memory_limit(clean):
    ok = clean.run([prog("return len(bytearray(300 << 20))")])[0]
    too_much = clean.run([prog("return len(bytearray(700 << 20))")])[0]
    assert ok == ProgramResult(float(300 << 20)) and too_much.error == "memory"


def test_too_long_and_odd_text(clean):
    big = "x = 1\n" * 15_000 + "def solution():\n    return x\n"  # more than a pipe holds
    results = clean.run(["#" * 200_000, "def solution():\n    return '\ud800'\n",
                         "def solution():\n    return 1\r\n", big], timeout_s=5)
    assert results[0].error == "too-long"
    assert results[1].value == "?" or results[1].error == "syntax"
    assert results[2:] == [ProgramResult(1.0)] * 2


def test_bad_arguments():
    with Sandbox(1) as sb:
        with pytest.raises(TypeError):
            sb.run([b"def solution(): return 1"])
        with pytest.raises(ValueError):
            sb.run(["x"], timeout_s=0)
    with pytest.raises(RuntimeError):
        sb.run(["x"])
    with pytest.raises(ValueError):
        Sandbox(0 - 1)


def test_close_leaves_nothing(secret_env):
    sb = Sandbox(2, timeout_s=1)
    pids = sb.executor_pids()
    assert sb.run([prog("return 3")]) == [ProgramResult(3.0)]
    sb.close()
    sb.close()
    time.sleep(0.1)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert_no_strays([sb])


def test_executor_killed_from_outside_is_replaced(clean):
    plain = clean.executor_pids()[0]
    os.kill(plain, signal.SIGKILL)
    assert clean.run([prog("return 4")]) == [ProgramResult(4.0)]
    assert clean.restarts == 1 and clean.executor_pids()[0] != plain
    sleepers = [prog("time.sleep(1)\nreturn 5", "import time")] * 4
    threading.Timer(0.3, os.kill, (clean.executor_pids()[0], signal.SIGKILL)).start()
    results = clean.run(sleepers, timeout_s=5)  # the ones running when it died run again
    assert results == [ProgramResult(5.0)] * 4 and clean.restarts == 2
    clean.restarts = 0


def test_default_instance():
    try:
        assert run_programs([prog("return 6")]) == [ProgramResult(6.0)]
        first = reft.sandbox.default_sandbox()
        assert run_programs([prog("return 7")], timeout_s=1) == [ProgramResult(7.0)]
        assert reft.sandbox.default_sandbox() is first
        assert run_programs([prog("return 8")], workers=1) == [ProgramResult(8.0)]
        assert reft.sandbox.default_sandbox(workers=1) is not first and first._closed
    finally:
        reft.sandbox.default_sandbox(workers=1).close()


def test_forked_trainer_gets_its_own_executors(clean):
    before = clean.executor_pids()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ok = clean.run([prog("return 9")]) == [ProgramResult(9.0)]
            ok = ok and clean.executor_pids()[0] not in before
            os.write(write, b"1" if ok else b"0")
            clean.close()
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert clean.executor_pids() == before and clean.run([prog("return 1")])[0].value == 1.0


def test_a_stray_is_noticed():
    """The leftover check itself works: a marked process is reported."""
    p = subprocess.Popen([sys.executable, "-c", "import ctypes, time; "
                          "ctypes.CDLL(None).prctl(15, b'rftxselftest', 0, 0, 0); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 5
        while not any(s.pid == p.pid for s in strays([])) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(s.pid == p.pid for s in strays([]))
    finally:
        p.kill()
        p.wait()


# -- as if the trainer were not root -------------------------------------------------------

UNPRIVILEGED = 65533
KILLER = prog("os.kill(os.getppid(), signal.SIGKILL)\nreturn 1", "import os, signal")  # zygote
EXECUTOR_KILLER = prog("stat = open(f'/proc/{os.getppid()}/stat').read()\n"
                       "os.kill(int(stat.rsplit(')', 1)[1].split()[1]), signal.SIGKILL)\nreturn 1",
                       "import os, signal")
ORPHAN = prog("if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
              "        ctypes.CDLL(None).prctl(15, b'rftxunpriv', 0, 0, 0)\n"
              "        time.sleep(1000)\n    os._exit(0)\nos.wait()\nreturn 5",
              "import ctypes, os, time")


@pytest.mark.skipif(os.geteuid() != 0, reason="acting out non-root needs root")
def test_unprivileged_with_landlock(secret_env, canaries):
    with Sandbox(2, timeout_s=1, executor_user=UNPRIVILEGED) as sb:
        if not sb.protections["signals_scoped"]:
            pytest.skip("Landlock signal scoping (Linux >= 6.12) not available")
        assert sb.protections["uid"] is None and not sb.protections["root"]
        write = prog(f"open('{canaries.closed_dir}/canary.txt', 'w').write('x')")
        killer, orphan, writer, innocent, executor_killer = sb.run(
            [KILLER, ORPHAN, write, prog("return 2"), EXECUTOR_KILLER])
        assert killer.error == executor_killer.error == "exception: PermissionError"
        assert writer.kind == "exception"
        assert (orphan, innocent) == (ProgramResult(5.0), ProgramResult(2.0))
        assert sb.restarts == 0
        assert_no_strays([sb])
    assert_no_strays([sb])


@pytest.mark.skipif(os.geteuid() != 0, reason="acting out non-root needs root")
def test_unprivileged_without_landlock_fails_only_the_killer(secret_env):
    with warnings.catch_warnings(), \
            Sandbox(2, timeout_s=1, executor_user=UNPRIVILEGED, landlock=False) as sb:
        warnings.simplefilter("ignore", RuntimeWarning)  # "could signal the trainer": yes
        innocent = prog("time.sleep(0.1)\nreturn 3", "import time")
        results = sb.run([innocent, KILLER, innocent, EXECUTOR_KILLER, innocent, ORPHAN])
        assert results[1] == results[3] == ProgramResult(None, "killed: executor")
        assert [results[i] for i in (0, 2, 4, 5)] == [ProgramResult(3.0)] * 3 + [ProgramResult(5.0)]
        assert sb.restarts >= 1  # the executor killer, run again alone, killed it twice
        assert_no_strays([sb])


def test_interrupted_run_leaves_a_usable_sandbox(secret_env):
    with Sandbox(2, timeout_s=2) as sb:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            sb.run([prog("time.sleep(1)\nreturn 1", "import time")] * 6)
        assert sb.run([prog("return 2")] * 3) == [ProgramResult(2.0)] * 3
        assert_no_strays([sb])


TRAINER = """
import json, sys
from reft.sandbox import Sandbox
sb = Sandbox(2, timeout_s=60)
sb.run(["def solution():\\n    return 1"])
print(json.dumps([sb.executor_pids(), [e.base for e in sb._executors.values()]]), flush=True)
sb.run(["import time\\ndef solution():\\n    time.sleep(60)"] * 2)
"""


def test_trainer_killed_outright_leaves_nothing(python, secret_env):
    """SIGKILL to the trainer: its executors see EOF, kill their children, remove their files."""
    trainer = subprocess.Popen([python, "-c", TRAINER], stdout=subprocess.PIPE, text=True)
    pids, bases = json.loads(trainer.stdout.readline())
    time.sleep(0.5)  # the sleepers are running
    trainer.kill()
    trainer.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")]
    assert not [b for b in bases if os.path.exists(b)]
    assert not [p for p in processes() if p.ppid in pids]
