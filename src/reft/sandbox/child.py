"""The process that runs one program: forked by its slot's zygote while the previous program
still runs, it waits (keeping the zygote's uid, so that program cannot reach it), takes the
slot's uid when its program arrives, runs it, replies, and ``_exit``s.

Everything that is the same for every program (working directory, memory and file limits,
Landlock, seccomp, empty environment, stdio on /dev/null) is already in place: it was done once
by the zygote and is inherited. What is done here is kept to plain system calls: every page
this process writes is a copy-on-write fault, and those are most of what a program costs.
Per program: a session of its own (so the zygote can kill the whole group; with the kernel's
autogroups a fork bomb also gets one CPU share, not one per process); as root the process
limit, then the slot's uid and, under it, ``kill(-1)``: every process the previous program of
this slot left behind dies before this one starts. If any step fails the program is not run.

The program can rewrite any module, so the few functions needed to finish (``os._exit``,
``os.write``) are bound at import time; whatever the child replies is checked again by the
executor and by the trainer.
"""

from __future__ import annotations

import builtins
import math
import os
import resource
import signal
from dataclasses import dataclass

from reft.sandbox import landlock
from reft.sandbox.isolation import close_all_but
from reft.sandbox.results import BAD, ProgramResult, encode_reply, reduce_value

_exit = os._exit
_write = os.write
_read = os.read


@dataclass(frozen=True)
class ChildConfig:
    """What the zygote tells each child."""

    zygote_pid: int
    uid: int | None  # the slot's own uid (as root); None: keep the zygote's
    max_processes: int | None  # RLIMIT_NPROC, per uid: only with a uid of our own
    scope_fd: int | None  # a Landlock ruleset that only scopes signals: keeps an unprivileged
    # child off its zygote (same uid); None where not needed or not available
    keep: tuple[int, ...] = ()  # descriptors to keep open: the import directories


def run(cfg: ChildConfig, program_fd: int, reply_fd: int, ready_fd: int) -> None:
    """Never returns: the child always ends in ``os._exit``. On ``ready_fd`` it says ``r`` when
    it waits for its program and ``s`` when it has taken the slot's uid, swept, and starts."""
    code = 71
    try:
        try:
            _prepare(cfg, {program_fd, reply_fd, ready_fd, *cfg.keep})
            _write(ready_fd, b"r")
            timeout_s, source = _receive(program_fd)
            _take_slot(cfg)
            _write(ready_fd, b"s")
            os.close(ready_fd)
        except BaseException:
            code = 72
            return
        cpu = math.ceil(timeout_s) + 1  # SIGXCPU backs up the wall-clock deadline
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        result = _execute(source)
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        _write(reply_fd, _encode(result))
        code = 0
    finally:
        _exit(code)


def _prepare(cfg: ChildConfig, keep: set[int]) -> None:
    """While the previous program of the slot still runs: nothing here can be reached by it
    (as root we keep the zygote's uid until the program arrives)."""
    os.setsid()
    if cfg.scope_fd is not None:
        keep.add(cfg.scope_fd)
    close_all_but(keep)
    if cfg.uid is not None and cfg.max_processes:
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg.max_processes,) * 2)
    if cfg.scope_fd is not None:
        if not landlock.restrict_self(cfg.scope_fd):
            raise OSError("landlock scope")
        os.close(cfg.scope_fd)
    # No parent-death signal (through ctypes it costs 80 page faults): if the zygote dies, the
    # executor sweeps the slot's uid, or, without one, kills the orphan as its subreaper.
    # Signal dispositions are Python's defaults already: nothing upstream changes them.
    if os.getppid() != cfg.zygote_pid:
        raise OSError("parent")


def _take_slot(cfg: ChildConfig) -> None:
    """As root: the slot's uid and gid, then kill every other process of that uid (what the
    previous program left: double forks, setsid escapes; ``kill(-1)`` is atomic against fork)."""
    if cfg.uid is None:
        return
    os.setgroups([])
    os.setresgid(cfg.uid, cfg.uid, cfg.uid)
    os.setresuid(cfg.uid, cfg.uid, cfg.uid)
    if os.getresuid() != (cfg.uid,) * 3:
        raise OSError("uid")
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _receive(fd: int) -> tuple[float, str]:
    """``timeout length\\n`` then ``length`` bytes of source; EOF first means the zygote is
    going away: exit quietly."""
    data = b""
    while b"\n" not in data:
        chunk = _read(fd, 1 << 16)
        if not chunk:
            _exit(0)
        data += chunk
    head, _, body = data.partition(b"\n")
    timeout, length = head.split()
    while len(body) < int(length):
        chunk = _read(fd, 1 << 16)
        if not chunk:
            _exit(0)
        body += chunk
    return float(timeout), body.decode("utf-8", "surrogatepass")


def _encode(result: ProgramResult) -> bytes:
    try:
        return encode_reply(result)
    except BaseException:
        return encode_reply(BAD)


def _execute(source: str) -> ProgramResult:
    try:
        code = compile(source, "<program>", "exec")
    except (SyntaxError, ValueError, RecursionError):
        return ProgramResult(None, "syntax")
    except MemoryError:
        return ProgramResult(None, "memory")
    except BaseException as e:
        return _exception(e)
    namespace = {"__name__": "__program__", "__builtins__": builtins}
    try:
        exec(code, namespace)
        solution = namespace.get("solution")
        if not callable(solution):
            return ProgramResult(None, "no-solution")
        return reduce_value(solution())
    except MemoryError:
        return ProgramResult(None, "memory")
    except BaseException as e:
        return _exception(e)


def _exception(error: BaseException) -> ProgramResult:
    try:
        return ProgramResult(None, f"exception: {type(error).__name__}")
    except BaseException:
        return ProgramResult(None, "exception: unknown")
