"""Result reduction (child side) and reply checking (executor and trainer side): pure, fast."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy

from reft.sandbox import landlock
from reft.sandbox.isolation import clear_dir, outcome
from reft.sandbox.results import BAD, MAX_STR, ProgramResult, check, parse_reply, reduce_value


@pytest.mark.parametrize("value, expected", [
    (203, 203.0), (-7, -7.0), (True, 1.0), (2.5, 2.5), (Fraction(1, 4), 0.25),
    (Decimal("1.5"), 1.5), (sympy.Integer(12), 12.0), (sympy.Rational(1, 8), 0.125),
    (sympy.sqrt(4), 2.0), (np.float64(0.5), 0.5), (np.int32(3), 3.0), (2**49, float(2**49)),
])
def test_numbers_become_floats(value, expected):
    assert reduce_value(value) == ProgramResult(expected)


@pytest.mark.parametrize("value", [
    float("nan"), float("inf"), -float("inf"), 1e15, -2e15, 10**16, Fraction(10**400, 3),
    Decimal("1e400"), sympy.oo, sympy.nan, sympy.Symbol("x"), sympy.I, np.array([1.0]),
    np.complex64(1j), 1j, [1], (1,), {1: 2}, None, b"12", object(), (i for i in range(2)),
])
def test_everything_else_is_bad(value):
    assert reduce_value(value) == BAD


def test_subclasses_are_bad_without_calling_them():
    calls = []

    class F(float):
        def __float__(self):
            calls.append(1)
            return 1.0

    class S(str):
        def __str__(self):
            calls.append(1)
            return "x"

    class I(int):  # noqa: E742
        def __index__(self):
            calls.append(1)
            return 1

    assert reduce_value(F(2.0)) == reduce_value(S("a")) == reduce_value(I(3)) == BAD
    assert not calls


def test_huge_int_is_refused_at_once():
    huge = 10**100_000
    start = time.perf_counter()
    assert reduce_value(huge) == BAD
    assert time.perf_counter() - start < 0.01


def test_strings_are_cut():
    assert reduce_value("x" * 500) == ProgramResult("x" * MAX_STR)
    assert reduce_value("") == ProgramResult("")


@pytest.mark.parametrize("value, error, expected", [
    (3.5, None, ProgramResult(3.5)), (3, None, ProgramResult(3.0)), ("a", None, ProgramResult("a")),
    (None, "timeout", ProgramResult(None, "timeout")),
    (None, "exception: ZeroDivisionError", ProgramResult(None, "exception: ZeroDivisionError")),
    (None, "killed: SIGSEGV", ProgramResult(None, "killed: SIGSEGV")),
    (None, "exit: 3", ProgramResult(None, "exit: 3")),
    (True, None, BAD), (None, None, BAD), (1e300, None, BAD), ("x" * 101, None, BAD),
    ([1], None, BAD), ({"a": 1}, None, BAD), (None, "exception: a b", BAD),
    (None, "pwned", BAD), (None, "timeout\n", BAD), (None, 7, BAD), (None, "x" * 500, BAD),
])
def test_check(value, error, expected):
    assert check(value, error) == expected


def test_check_replaces_lone_surrogates():
    assert check("a\ud800", None) == ProgramResult("a?")


@pytest.mark.parametrize("reply, expected", [
    (b'{"v": 2.0, "e": null}\n', ProgramResult(2.0)),
    (b'{"v": null, "e": "memory"}\n', ProgramResult(None, "memory")),
    (b'{"v": 2.0, "e": null}', BAD),  # no newline: cut off
    (b'{"v": 2.0, "e": null}\n{"v": 3.0, "e": null}\n', BAD),
    (b'{"v": NaN, "e": null}\n', BAD), (b'{"v": Infinity, "e": null}\n', BAD),
    (b'{"v": 2.0}\n', BAD), (b'{"v": 2.0, "e": null, "x": 1}\n', BAD), (b"[1, 2]\n", BAD),
    (b"\xff\xfe\n", BAD), (b"", BAD), (b'{"v": "' + b"x" * 5000 + b'", "e": null}\n', BAD),
    (b"[" * 100_000 + b"\n", BAD),
])
def test_parse_reply(reply, expected):
    assert parse_reply(reply) == expected


def test_outcome_from_exit_status():
    killed = 9  # wait status of a SIGKILL death
    assert outcome(False, b"", killed) == ProgramResult(None, "killed: SIGKILL")
    assert outcome(False, b"", 3 << 8) == ProgramResult(None, "exit: 3")
    assert outcome(False, b"", 24) == ProgramResult(None, "timeout")  # SIGXCPU
    assert outcome(True, b'{"v": 1.0, "e": null}\n', 0) == ProgramResult(None, "timeout")
    assert outcome(False, b'{"v": 1.0, "e": null}\n', 0) == ProgramResult(1.0)


@pytest.fixture
def scratch(tmp_path):
    """A directory in memory where there is one: deep trees are slow to build on some disks."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_clear_dir_handles_deep_and_unreadable_trees(scratch):
    path = scratch / "w"
    path.mkdir()
    fd = os.open(path, os.O_RDONLY)
    for _ in range(1500):  # deeper than the recursion limit, longer than PATH_MAX
        os.mkdir("d", dir_fd=fd)
        fd, old = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(old)
    os.close(os.open("f", os.O_CREAT | os.O_WRONLY, dir_fd=fd))
    os.close(fd)
    (path / "link").symlink_to("/etc")
    (path / "locked").mkdir()
    (path / "locked" / "f").write_text("x")
    os.chmod(path / "locked", 0)
    clear_dir(str(path))
    assert os.listdir(path) == [] and os.path.exists("/etc/passwd")


def test_landlock_abi_is_a_version():
    assert isinstance(landlock.abi(), int) and landlock.abi() >= 0
    assert math.isfinite(landlock.abi())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act out another user")
def test_clear_dir_unlocks_what_the_owner_locked():
    """Not root (no permission bypass): a directory the program chmod'ed to 0 is reopened."""
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tree is closed to other users
    top.chmod(0o755)
    path = top / "w"
    (path / "locked" / "inner").mkdir(parents=True)
    (path / "locked" / "inner" / "f").write_text("x")
    for p in (path, path / "locked", path / "locked" / "inner", path / "locked" / "inner" / "f"):
        os.chown(p, 65533, 65533)
    os.chmod(path / "locked" / "inner", 0)
    os.chmod(path / "locked", 0)
    pid = os.fork()
    if pid == 0:
        try:
            os.setresgid(65533, 65533, 65533)
            os.setresuid(65533, 65533, 65533)
            clear_dir(str(path))
            os._exit(0 if not os.listdir(path) else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    shutil.rmtree(top)
