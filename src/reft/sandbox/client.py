"""The trainer's side: ``Sandbox`` owns the executor processes and talks JSON lines to them.

An executor is a fresh interpreter (``python -I``, like multiprocessing's "spawn", but with an
empty environment, no pickle in either direction and no re-import of the trainer's
``__main__``), in a session of its own. There are two: one with ``sympy`` preloaded for the
programs that mention it, and a lean one for the rest, because forking costs time in proportion
to the parent's memory and sympy triples it. Everything an executor says is checked here as if
it were hostile: if it dies, hangs past every deadline or says something malformed, it is
killed and replaced; the programs it was running at that moment are run again one at a time,
so that only a program that kills its executor fails (``killed: executor``), and the programs
it had not started run as usual.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections.abc import Sequence

from reft.sandbox.isolation import remove_tree
from reft.sandbox.results import ProgramResult, check, loads
from reft.sandbox.workers import default_workers

_BOOT = ("import sys, json; sys.path[:0] = json.loads(sys.argv[2]); "
         "from reft.sandbox.executor import main; main(sys.argv[1:2])")
_PRELOAD = {"plain": ["math", "fractions", "decimal"],
            "sympy": ["math", "fractions", "decimal", "sympy"]}
_MAX_LINE = 1 << 16
_GRACE_S = 5.0  # beyond a program's own timeout, before its executor counts as stuck
_START_S = 120.0  # for an executor's first words (it may be importing sympy on a busy machine)
_LOST = ProgramResult(None, "killed: executor")
_UID_BASE = 0x40000000  # uids nobody uses: base + 256 * random + slot


MAX_WORKERS = 256  # worker slots per executor: the uid block of a kind holds 256 (_UID_BASE)


class _Lost(Exception):
    """The executor died, hung, or said something it should not have."""


def _new_uid_bases() -> dict[str, int]:
    pick = random.SystemRandom().randrange
    return {kind: _UID_BASE + 256 * pick(1 << 22) for kind in _PRELOAD}


def _kind(source: str) -> str:
    return "sympy" if "sympy" in source else "plain"


class _Executor:
    """One executor process, its two pipes and its directory."""

    def __init__(self, settings: dict):
        self.base = tempfile.mkdtemp(prefix="reft-sandbox-")
        if settings["run_as"] is not None:
            os.chown(self.base, settings["run_as"], settings["run_as"])
        here = os.path.dirname(os.path.abspath(__file__))
        paths = [os.path.dirname(os.path.dirname(here))]
        paths += [p for p in sys.path if p and os.path.isabs(p)]
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT, json.dumps(dict(settings, base_dir=self.base)),
             json.dumps(paths)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={}, cwd="/",
            start_new_session=True, close_fds=True,
        )
        self.fd = self.proc.stdout.fileno()
        self.buffer = b""
        self.inbox: list[dict] = []
        self.protections: dict | None = None

    def wait_ready(self) -> None:
        if self.protections is not None:
            return
        deadline = time.monotonic() + _START_S
        while not self.inbox:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise _Lost("no answer")
            self.receive()
        message = self.inbox.pop(0)
        if message.get("ready") != 1 or type(message.get("protections")) is not dict:
            raise _Lost("no ready message")
        self.protections = message["protections"]

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise _Lost("executor gone") from e

    def take(self) -> list[dict]:
        """Read once (the pipe is readable); return the complete messages so far."""
        self.receive()
        messages, self.inbox = self.inbox, []
        return messages

    def receive(self) -> None:
        """Read once and queue the complete messages."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            raise _Lost("executor died")
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        if len(self.buffer) > _MAX_LINE:
            raise _Lost("oversized message")
        for line in lines:
            message = loads(line)
            if message is None:
                raise _Lost("malformed message")
            self.inbox.append(message)

    def close(self, wait_s: float = 5.0) -> None:
        """EOF on its stdin: it kills its children, removes their files and exits."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._cleanup()

    def kill(self) -> None:
        """Its children die with it (parent-death signal); what they wrote is removed here."""
        self.proc.kill()
        self.proc.wait()
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self._cleanup()

    def _cleanup(self) -> None:
        self.proc.stdout.close()
        remove_tree(self.base)


class _Batch:
    """The programs one executor is running in this round, and how long we wait for each."""

    def __init__(self, kind: str, executor: _Executor, indices: list[int], timeout_s: float):
        self.kind, self.executor, self.timeout_s = kind, executor, timeout_s
        self.waiting = set(indices)
        self.started: dict[int, float] = {}  # index -> when we give up on the executor
        self.last = time.monotonic()
        self.finished = False

    @property
    def deadline(self) -> float:
        return min(self.started.values(), default=self.last + _START_S)

    def feed(self, message: dict, results: list) -> None:
        self.last = time.monotonic()
        if "done" in message and not self.waiting:
            self.finished = True
            return
        index = message.get("s", message.get("r"))
        if type(index) is not int or index not in self.waiting or self.finished:
            raise _Lost(f"unexpected message {str(message)[:80]}")
        if "s" in message:
            self.started[index] = self.last + self.timeout_s + _GRACE_S
        else:
            results[index] = check(message.get("v"), message.get("e"))
            self.started.pop(index, None)
            self.waiting.discard(index)

    def lose(self) -> set[int]:
        """The executor is gone: which programs were running on it."""
        self.finished = True
        return set(self.started)


class Sandbox:
    """Runs untrusted programs, each in a fresh forked child of a long-lived executor.

    Start it early (the executors import their preloads once); use it as a context manager or
    call ``close()``; it is also closed at interpreter exit. Options set the limits of every
    child: ``workers`` children at once (default: ``default_workers()``, this process's share of
    the usable CPUs), ``memory_mb`` of address
    space beyond the preloaded interpreter, ``max_processes`` per child (with a uid of its own),
    ``file_size_mb`` per file written, ``open_files`` descriptors, ``max_chars`` of source.
    ``landlock``, ``network`` (a namespace without interfaces), ``drop_root`` (a uid per
    worker slot, as root) and ``seccomp`` switch protection layers; keep them on outside of
    tests.
    ``executor_user``: the executors drop to that uid once set up, as if the trainer were not
    root (for tests; a real unprivileged trainer needs nothing set).
    """

    def __init__(self, workers: int | None = None, *, timeout_s: float = 3.0, memory_mb: int = 512,
                 max_processes: int = 32, file_size_mb: int = 16, open_files: int = 64,
                 max_chars: int = 100_000, landlock: bool = True, network: bool = True,
                 drop_root: bool = True, seccomp: bool = True, executor_user: int | None = None):
        workers = workers or default_workers()
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be in 1..{MAX_WORKERS}, got {workers}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.settings = {"workers": workers, "memory_mb": memory_mb, "max_processes": max_processes,
                         "file_size_mb": file_size_mb, "open_files": open_files,
                         "max_chars": max_chars, "landlock": landlock, "network": network,
                         "drop_root": drop_root, "seccomp": seccomp}
        # unused uids, one per worker slot, kept across restarts so that a new executor can
        # sweep what an old one left
        self._uid_bases = _new_uid_bases()
        self._user = executor_user
        self._owner = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0
        self._executors: dict[str, _Executor | None] = {kind: None for kind in _PRELOAD}
        _live.add(self)
        for kind in _PRELOAD:
            self._executors[kind] = self._spawn(kind)

    def _spawn(self, kind: str) -> _Executor:
        settings = dict(self.settings, preload=_PRELOAD[kind], uid_base=self._uid_bases[kind],
                        run_as=self._user)
        return _Executor(settings)

    @property
    def protections(self) -> dict:
        """The layers the lean executor has: root, network_namespace, uid (the first slot's),
        landlock (ABI version, 0 if off), signals_scoped, seccomp."""
        with self._lock:
            return dict(self._ready("plain").protections)

    def executor_pids(self) -> list[int]:
        with self._lock:
            return [self._ready(kind).proc.pid for kind in _PRELOAD]

    def run(self, programs: Sequence[str], timeout_s: float | None = None) -> list[ProgramResult]:
        """One result per program, in order. Raises only for bad arguments, or when an executor
        cannot start at all."""
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        if not timeout > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        for i, program in enumerate(programs):
            if type(program) is not str:
                raise TypeError(f"program {i} is {type(program).__name__}, not str")
        results: list[ProgramResult | None] = [None] * len(programs)
        with self._lock:
            pending, suspects, fruitless = list(range(len(programs))), [], 0
            while pending or suspects:
                # programs that were running when an executor was lost run again one at a time,
                # so only the one that kills its executor fails ("killed: executor")
                solo = suspects.pop() if suspects else None
                lost = self._round(programs, [solo] if solo is not None else pending, timeout,
                                   results)
                if solo is not None:
                    results[solo] = _LOST if results[solo] is None else results[solo]
                    continue
                left = [i for i in pending if results[i] is None and i not in lost]
                fruitless = fruitless + 1 if len(left) == len(pending) else 0
                if fruitless >= 3:
                    raise RuntimeError("the sandbox executors keep failing before running anything")
                pending, suspects = left, suspects + sorted(lost)
        return results  # type: ignore[return-value]

    def _round(self, programs, todo: list[int], timeout: float, results: list) -> set[int]:
        """Run ``todo`` (on the executor for each one's kind); return the programs that were
        running when their executor was lost."""
        groups: dict[str, list[int]] = {}
        for i in todo:
            groups.setdefault(_kind(programs[i]), []).append(i)
        batches: list[_Batch] = []
        try:
            for kind, indices in groups.items():
                executor = self._ready(kind)
                try:
                    executor.send({"timeout_s": timeout,
                                   "programs": [[i, programs[i]] for i in indices]})
                except _Lost:  # died before reading: its programs go in the next round
                    self._replace(kind)
                    continue
                batches.append(_Batch(kind, executor, indices, timeout))
            return self._collect(batches, results)
        except BaseException:  # Ctrl-C, or an executor that cannot start: leave none mid-batch
            for batch in batches:
                if not batch.finished:
                    self._replace(batch.kind)
            raise

    def _collect(self, batches: list[_Batch], results: list) -> set[int]:
        lost: set[int] = set()
        while batches:
            wait = max(0.0, min(b.deadline for b in batches) - time.monotonic())
            readable = select.select([b.executor.fd for b in batches], [], [], wait)[0]
            for batch in batches:
                try:
                    if batch.executor.fd in readable:
                        for message in batch.executor.take():
                            batch.feed(message, results)
                    elif time.monotonic() > batch.deadline:
                        raise _Lost("executor stuck")
                except _Lost:
                    lost |= batch.lose()
                    self._replace(batch.kind)
            batches = [b for b in batches if not b.finished]
        return lost

    def _ready(self, kind: str) -> _Executor:
        if self._closed:
            raise RuntimeError("this Sandbox is closed")
        if self._owner != os.getpid():  # we were forked: never touch the parent's executors
            self._owner, self._uid_bases = os.getpid(), _new_uid_bases()
            self._executors = {k: None for k in _PRELOAD}
        if self._executors[kind] is None:
            self._executors[kind] = self._spawn(kind)
        executor = self._executors[kind]
        try:
            executor.wait_ready()
        except _Lost as e:
            self._replace(kind)
            raise RuntimeError(f"the sandbox executor did not start: {e}") from e
        _warn_if_weak(executor.protections)
        return executor

    def _replace(self, kind: str) -> None:
        """Kill the executor; the next use starts a new one."""
        executor, self._executors[kind] = self._executors[kind], None
        if executor is not None:
            executor.kill()
            self.restarts += 1

    def close(self) -> None:
        """Stop the executors (they kill their children and remove their files). Idempotent."""
        if self._closed:
            return
        self._closed = True
        executors, self._executors = self._executors, {}
        if self._owner == os.getpid():
            for executor in executors.values():
                if executor is not None:
                    executor.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and getattr(self, "_owner", None) == os.getpid():
            self.close()


_live: weakref.WeakSet[Sandbox] = weakref.WeakSet()
_warned = False


def _warn_if_weak(protections: dict | None) -> None:
    global _warned
    if _warned or not protections or protections.get("uid") or protections.get("signals_scoped"):
        return
    _warned = True
    warnings.warn("reft.sandbox: neither a separate uid (needs root) nor Landlock signal scoping "
                  "(Linux >= 6.12) is available; a hostile program could signal the trainer",
                  RuntimeWarning, stacklevel=4)


@atexit.register
def _close_all() -> None:
    for sandbox in list(_live):
        sandbox.close()
