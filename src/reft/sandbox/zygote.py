"""A worker slot's zygote: forked once by the executor, locked down once, then it forks one
fresh child per program, watches its deadline and reports how it ended.

Why a zygote per slot and not the executor itself: ``fork`` write-protects the whole parent,
so a parent that does a lot between forks pays hundreds of page faults per program; the
zygote's loop touches little. And the slots' zygotes fork side by side.

The zygote never runs program code. It locks itself down before anything else: a session of
its own, stdio on /dev/null, every other inherited descriptor closed, the slot's working
directory, memory and file limits, Landlock (read the Python installation, write the slot's
directory, no exec, no TCP, no signals beyond the sandbox), not dumpable (its memory is out of
reach of /proc), an empty environment, the seccomp filter. As root it keeps its uid, so that
its children can take the slot's uid after forking, and cannot signal it then.

The child for the next program is forked while the current one runs (off the critical path);
it waits under the zygote's uid, out of the running program's reach, and when its program comes
it takes the slot's uid and kills whatever the previous program left (see child.py). What the
last program of a batch leaves, the executor sweeps before it says the batch is done.

Protocol: the executor writes ``timeout length\\n`` + source on the control pipe; the zygote
answers ``timed_out status length\\n`` + the child's reply (at most 4 KiB) on the events pipe.
The executor makes the result of it (``isolation.outcome``).
"""

from __future__ import annotations

import os
import resource
import select
import signal
import sys
import time
from dataclasses import dataclass

from reft.sandbox import _libc, child, landlock, seccomp
from reft.sandbox.isolation import (
    close_all_but,
    fits,
    kill_group,
    reset_workdir,
    workdir_is_clean,
)
from reft.sandbox.results import MAX_REPLY

_exit = os._exit
_MiB = 1 << 20
_PR_SET_DUMPABLE = 4
_TRIES = 20  # children killed before they started (by a leftover): give up after this
_READY_S = 5.0  # a child that does not say "ready" or "started" by then is replaced


@dataclass(frozen=True)
class ZygoteConfig:
    """The same for every slot of an executor."""

    executor_pid: int
    address_space: int  # bytes of virtual memory (RLIMIT_AS), the preloaded interpreter included
    file_size_mb: int
    open_files: int
    import_fds: tuple[int, ...]  # the import directories, as /proc/self/fd/N (reroute_imports)
    seccomp: seccomp.Filter | None


@dataclass(frozen=True)
class SlotConfig:
    """What differs between slots."""

    workdir: str
    uid: int | None  # the uid its children take (as root); None: keep ours
    ruleset_fd: int | None  # its Landlock ruleset; None without Landlock
    scope_fd: int | None  # for unprivileged children: a ruleset that only scopes signals
    max_processes: int | None


class _Spare:
    """A child that waits for its program."""

    def __init__(self, pid: int, program: int, reply: int, ready: int):
        self.pid, self.program, self.reply, self.ready = pid, program, reply, ready
        self.pidfd = os.pidfd_open(pid)


def serve(cfg: ZygoteConfig, slot: SlotConfig, control_fd: int, events_fd: int) -> None:
    """Never returns. Exit status 0: told to stop; anything else: the executor replaces us."""
    code = 3
    try:
        _lock_down(cfg, slot, {control_fd, events_fd, *cfg.import_fds})
        code = _Zygote(cfg, slot, control_fd, events_fd).loop()
    except BaseException:
        code = 4
    finally:
        _exit(code)


def _lock_down(cfg: ZygoteConfig, slot: SlotConfig, keep: set[int]) -> None:
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    keep |= {fd for fd in (slot.ruleset_fd, slot.scope_fd) if fd is not None}
    close_all_but(keep)
    os.chdir(slot.workdir)
    for which, value in ((resource.RLIMIT_AS, cfg.address_space),
                         (resource.RLIMIT_FSIZE, cfg.file_size_mb * _MiB),
                         (resource.RLIMIT_NOFILE, cfg.open_files), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    if slot.ruleset_fd is not None:
        if not landlock.restrict_self(slot.ruleset_fd):
            raise OSError("landlock")
        os.close(slot.ruleset_fd)
    elif not _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1):
        raise OSError("no_new_privs")
    if not _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL) or os.getppid() != cfg.executor_pid:
        raise OSError("parent")
    if not _libc.prctl(_PR_SET_DUMPABLE, 0):
        raise OSError("dumpable")
    os.environ.clear()
    sys.dont_write_bytecode = True
    if cfg.seccomp is not None and not cfg.seccomp.install():
        raise OSError("seccomp")


class _Zygote:
    def __init__(self, cfg: ZygoteConfig, slot: SlotConfig, control_fd: int, events_fd: int):
        self.slot, self.control, self.events = slot, control_fd, events_fd
        self.child_cfg = child.ChildConfig(zygote_pid=os.getpid(), uid=slot.uid,
                                           max_processes=slot.max_processes,
                                           scope_fd=slot.scope_fd, keep=cfg.import_fds)
        self.buffer = b""

    def loop(self) -> int:
        spare = self._spawn()
        while True:
            message = self._next_program()
            if message is None:
                _discard(spare)
                return 0
            running, deadline = self._start(spare, message)
            spare = self._spawn()  # the next program's child, forked while this one runs
            report = self._finish(running, deadline)
            if not workdir_is_clean(".", self.slot.uid):
                reset_workdir(os.getcwd(), self.slot.uid)
            os.write(self.events, report)

    def _next_program(self) -> bytes | None:
        """One ``timeout length\\n source`` message from the executor; None at EOF."""
        while b"\n" not in self.buffer:
            if not self._read_more():
                return None
        head = self.buffer.split(b"\n", 1)[0]
        size = len(head) + 1 + int(head.split()[1])
        while len(self.buffer) < size:
            if not self._read_more():
                return None
        message, self.buffer = self.buffer[:size], self.buffer[size:]
        return message

    def _read_more(self) -> bool:
        data = os.read(self.control, 1 << 20)
        self.buffer += data
        return bool(data)

    def _spawn(self) -> _Spare:
        for _ in range(_TRIES):
            program_r, program_w = os.pipe()
            reply_r, reply_w = os.pipe()
            ready_r, ready_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    child.run(self.child_cfg, program_r, reply_w, ready_w)
                finally:
                    _exit(70)
            for fd in (program_r, reply_w, ready_w):
                os.close(fd)
            spare = _Spare(pid, program_w, reply_r, ready_r)
            if _says(spare, b"r"):
                os.set_blocking(reply_r, False)
                return spare
            _discard(spare)
        raise OSError("no child would start")

    def _start(self, spare: _Spare, message: bytes) -> tuple[_Spare, float]:
        """Hand the program over; the child takes the slot's uid, sweeps, and says it starts.
        One that dies first (a leftover of the previous program got it) is replaced."""
        for _ in range(_TRIES):
            if fits(spare.program, len(message)):
                try:
                    os.write(spare.program, message)
                except BrokenPipeError:
                    pass
            if _says(spare, b"s"):
                timeout_s = float(message.split(b" ", 1)[0])
                return spare, time.monotonic() + timeout_s
            _discard(spare)
            spare = self._spawn()
        raise OSError("no child would start")

    def _finish(self, spare: _Spare, deadline: float) -> bytes:
        """Wait for the child to end (or kill it at the deadline); the report for the
        executor: ``timed_out status length\\n`` and the child's reply."""
        timed_out = not select.select([spare.pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]
        if timed_out:
            kill_group(spare.pid)
            select.select([spare.pidfd], [], [])
        try:
            reply = os.read(spare.reply, MAX_REPLY + 1)
        except BlockingIOError:
            reply = b""
        _, status = _discard(spare)
        return b"%d %d %d\n" % (timed_out, status, len(reply)) + reply


def _says(spare: _Spare, word: bytes) -> bool:
    """Whether the child writes ``word`` on its ready pipe soon (not: it died, or hangs)."""
    if not select.select([spare.ready], [], [], _READY_S)[0]:
        return False
    return os.read(spare.ready, 1) == word


def _discard(spare: _Spare) -> tuple[int, int]:
    """Kill the child's group (the zombie still holds the group id, so no stranger is hit),
    reap it, close its pipes."""
    kill_group(spare.pid)
    for fd in (spare.pidfd, spare.program, spare.reply, spare.ready):
        try:
            os.close(fd)
        except OSError:
            pass
    return os.waitpid(spare.pid, 0)
