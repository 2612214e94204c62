"""The executor: a long-lived process that runs batches of programs on its worker slots.

``Sandbox`` starts it as a fresh interpreter with an empty environment. It imports its preloads
(``math``; ``sympy`` for the executor that runs programs which use it) once, sets up what holds
for every program (a network namespace without interfaces, being the reaper of every orphan,
per slot a uid, a working directory and a Landlock ruleset), and forks one zygote per slot
(zygote.py), which forks a fresh child per program (child.py). It serves batches read from
stdin, one JSON line each, and answers on stdout, one JSON line per event:

    {"ready": 1, "pid": ..., "protections": {...}}   once, at start
    {"s": i}                                         program i started
    {"r": i, "v": value, "e": error}                 program i finished
    {"done": n}                                      batch finished, every stray process reaped

It never runs program code, never forks per program and never unpickles anything. If a zygote
dies, or misses a deadline by more than a grace period, its slot is swept and given a new one.
EOF on stdin means the trainer is gone: it kills everything it started, removes its files, exits.
"""

from __future__ import annotations

import collections
import gc
import importlib
import json
import os
import select
import signal
import time

from reft.sandbox import landlock, seccomp, zygote
from reft.sandbox.isolation import (
    Sweeper,
    become_subreaper,
    children,
    fits,
    kill_group,
    outcome,
    python_dirs,
    remove_tree,
    reroute_imports,
    reset_workdir,
    setup_namespaces,
    slot_uids,
    vm_size,
)
from reft.sandbox.results import MAX_REPLY, ProgramResult

_MiB = 1 << 20
_GRACE_S = 2.0  # a zygote that has not answered this long after the deadline is replaced
_LOST = ProgramResult(None, "killed: executor")


class _Slot:
    """A worker slot: its uid, directory and ruleset, and its zygote (if running)."""

    def __init__(self, config: zygote.SlotConfig):
        self.config = config
        self.pid = self.pidfd = self.control = self.events = None
        self.buffer = b""
        self.index: int | None = None  # the program it runs; None while idle
        self.deadline = 0.0
        self.timed_out = False


class Executor:
    def __init__(self, settings: dict):
        self.max_chars = int(settings["max_chars"])
        for name in settings["preload"]:
            try:
                importlib.import_module(name)
            except ImportError:  # programs that need it will fail on their own
                pass
        run_as = settings.get("run_as")  # tests: act out an executor started without root
        root = os.geteuid() == 0 and run_as is None
        self.protections = {"root": root, "network_namespace": False, "uid": None,
                            "landlock": 0, "signals_scoped": False, "seccomp": False,
                            "preload": settings["preload"]}
        if root and settings["network"]:
            self.protections["network_namespace"] = setup_namespaces()
        become_subreaper()
        syscalls = seccomp.Filter() if settings["seccomp"] else None
        self.protections["seccomp"] = bool(syscalls and syscalls.available)
        read_dirs = python_dirs()
        self.cfg = zygote.ZygoteConfig(
            executor_pid=os.getpid(),
            address_space=vm_size() + int(settings["memory_mb"]) * _MiB,
            file_size_mb=int(settings["file_size_mb"]),
            open_files=int(settings["open_files"]),
            import_fds=reroute_imports(),
            seccomp=syscalls if self.protections["seccomp"] else None,
        )
        self.slots = self._make_slots(settings, root, read_dirs)
        self.dying: set[int] = set()  # killed orphans not reaped yet
        self.out = bytearray()
        self.poller = select.poll()
        self.poller.register(0, select.POLLIN)
        self.by_fd: dict[int, _Slot] = {}
        if run_as is not None:
            os.setgroups([])
            os.setresgid(run_as, run_as, run_as)
            os.setresuid(run_as, run_as, run_as)
        gc.freeze()  # keep the collector from touching (and copying) inherited pages
        for slot in self.slots:
            self._spawn(slot)

    def _make_slots(self, settings: dict, root: bool, read_dirs: list[str]) -> list[_Slot]:
        workers, self.base = int(settings["workers"]), settings["base_dir"]
        uids = slot_uids(int(settings["uid_base"]), workers) if root and settings["drop_root"] \
            else None
        version = landlock.abi() if settings["landlock"] else 0
        read_fds = landlock.open_paths(read_dirs) if version else []
        scope = landlock.scope_ruleset(version) if version and not uids else None
        self.uids = uids
        self.sweeper = Sweeper() if uids else None
        self.protections.update(uid=uids[0] if uids else None, landlock=version,
                                signals_scoped=version >= 6)
        slots = []
        for number in range(workers):
            uid = uids[number] if uids else None
            if uid is not None:
                self.sweeper.sweep(uid)  # what a previous executor of this Sandbox left
            workdir = os.path.join(self.base, f"slot{number}")
            os.mkdir(workdir, 0o700)
            owner = uid if uid is not None else settings.get("run_as")
            if owner is not None:
                os.chown(workdir, owner, owner)
            ruleset = None
            if version:
                here = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
                ruleset = landlock.ruleset(version, read_fds, here)
                os.close(here)
            slots.append(_Slot(zygote.SlotConfig(
                workdir, uid, ruleset, scope,
                int(settings["max_processes"]) if uid is not None else None)))
        for fd in read_fds:
            os.close(fd)
        return slots

    # -- serving ---------------------------------------------------------------------------

    def serve(self) -> None:
        self._send({"ready": 1, "pid": os.getpid(), "protections": self.protections})
        self._flush()
        buffer = b""
        while True:
            self._wait_between_batches()
            data = os.read(0, 1 << 20)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                request = json.loads(line)
                self.run_batch(request["programs"], float(request["timeout_s"]))

    def _wait_between_batches(self) -> None:
        """Block until the trainer writes; meanwhile notice zygotes that die."""
        while True:
            events = self.poller.poll()
            if any(fd == 0 for fd, _ in events):
                return
            for fd, _ in events:
                self._event(fd)

    def run_batch(self, programs: list, timeout_s: float) -> None:
        queue = collections.deque(programs)
        while queue or any(slot.index is not None for slot in self.slots):
            handed = []
            for slot in self.slots:
                while queue and slot.index is None:
                    message = self._claim(slot, *queue.popleft(), timeout_s)
                    if message is not None:
                        handed.append((slot, message))
            # "started" reaches the trainer before any of these programs can run: one that
            # kills us at once is still known to have been running
            self._flush()
            for slot, message in handed:
                try:
                    os.write(slot.control, message)  # fits in the empty pipe: never blocks
                except BrokenPipeError:  # the zygote died: its pidfd tells
                    pass
            for fd, _ in self.poller.poll(self._wait_ms()):
                if fd == 0:
                    self._check_trainer()
                else:
                    self._event(fd)
            self._enforce_deadlines()
            self._reap_dying()
        self._settle()
        self._send({"done": len(programs)})
        self._flush()

    def _claim(self, slot: _Slot, index: int, source: str, timeout_s: float) -> bytes | None:
        """Reserve the slot for a program; None if the program is refused outright."""
        if slot.pid is None:
            self._spawn(slot)
        payload = source.encode("utf-8", "surrogatepass")
        message = f"{timeout_s!r} {len(payload)}\n".encode() + payload
        if len(source) > self.max_chars or not fits(slot.control, len(message)):
            self._result(index, ProgramResult(None, "too-long"))
            return None
        slot.index, slot.timed_out = index, False
        slot.deadline = time.monotonic() + timeout_s + _GRACE_S
        self._send({"s": index})
        return message

    def _wait_ms(self) -> int:
        deadlines = [s.deadline for s in self.slots if s.index is not None and not s.timed_out]
        if not deadlines:
            return 50 if any(s.index is not None for s in self.slots) else 0
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _check_trainer(self) -> None:
        """stdin is readable mid-batch only when the trainer has gone (EOF)."""
        if not os.read(0, 1 << 16):
            self.shutdown()
            os._exit(0)

    def _event(self, fd: int) -> None:
        slot = self.by_fd.get(fd)
        if slot is None:  # its zygote's death was handled earlier in the same round
            return
        if fd == slot.events:
            self._read_events(slot)
        else:
            self._zygote_died(slot)

    def _read_events(self, slot: _Slot) -> None:
        """The zygote's report: ``timed_out status length\\n`` + the child's reply."""
        try:
            slot.buffer += os.read(slot.events, MAX_REPLY + 64)
        except BlockingIOError:
            return
        head, newline, rest = slot.buffer.partition(b"\n")
        try:
            timed_out, status, size = (int(x) for x in head.split())
        except ValueError:
            if not newline and len(head) < 64:
                return  # not all here yet
            timed_out, status, size, rest = 0, 0, 0, b""  # nonsense: the zygote is replaced
            kill_group(slot.pid)
        if len(rest) < size and size <= MAX_REPLY + 1:
            return
        slot.buffer = b""
        index, slot.index = slot.index, None
        if index is not None:
            self._result(index, outcome(bool(timed_out), rest[:size], status))
        self._reap_orphans()

    def _enforce_deadlines(self) -> None:
        """The zygote enforces each program's deadline; this is for a zygote that does not."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.index is not None and not slot.timed_out and now >= slot.deadline:
                slot.timed_out = True
                kill_group(slot.pid)

    def _spawn(self, slot: _Slot) -> None:
        control_r, control_w = os.pipe()
        events_r, events_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(control_w)
                os.close(events_r)
                zygote.serve(self.cfg, slot.config, control_r, events_w)
            finally:
                os._exit(70)
        os.close(control_r)
        os.close(events_w)
        os.set_blocking(events_r, False)
        slot.pid, slot.pidfd, slot.control, slot.events = pid, os.pidfd_open(pid), control_w, events_r
        slot.buffer, slot.index = b"", None
        for fd in (slot.pidfd, slot.events):
            self.by_fd[fd] = slot
            self.poller.register(fd, select.POLLIN)

    def _zygote_died(self, slot: _Slot) -> None:
        """Sweep the slot, tell how its program ended (if one was running), respawn lazily."""
        self._read_events(slot)  # its last words, if it got them out
        kill_group(slot.pid)
        os.waitpid(slot.pid, 0)
        for fd in (slot.pidfd, slot.events):
            self.poller.unregister(fd)
            del self.by_fd[fd]
            os.close(fd)
        os.close(slot.control)
        if slot.config.uid is not None:
            self.sweeper.sweep(slot.config.uid)
        self._reap_orphans()
        if slot.index is not None:
            self._result(slot.index, ProgramResult(None, "timeout") if slot.timed_out else _LOST)
        slot.pid = slot.index = None
        if not os.path.isdir(slot.config.workdir):
            reset_workdir(slot.config.workdir, slot.config.uid)

    def _reap_orphans(self) -> None:
        """Kill children we did not fork: orphaned descendants of programs, handed to us as
        the subreaper."""
        ours = {slot.pid for slot in self.slots} | {self.sweeper and self.sweeper.pid}
        for pid in children() - ours - self.dying:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.dying.add(pid)
        self._reap_dying()

    def _reap_dying(self) -> None:
        for pid in list(self.dying):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.dying.discard(pid)

    def _settle(self, limit_s: float = 2.0) -> None:
        """Before saying "done": what the batch's last programs left is killed (the waiting
        children keep the zygotes' uid, so a sweep of the slot uids spares them) and every
        orphan is reaped (their deaths take a moment)."""
        if self.sweeper:
            for uid in self.uids:
                self.sweeper.sweep(uid)
        end = time.monotonic() + limit_s
        ours = {slot.pid for slot in self.slots} | {self.sweeper and self.sweeper.pid}
        while time.monotonic() < end:
            self._reap_orphans()
            if not self.dying and not children() - ours:
                return
            time.sleep(0.002)

    def _result(self, index: int, result: ProgramResult) -> None:
        self._send({"r": index, "v": result.value, "e": result.error})

    def _send(self, message: dict) -> None:
        self.out += json.dumps(message).encode() + b"\n"

    def _flush(self) -> None:
        data, self.out = bytes(self.out), bytearray()
        while data:
            data = data[os.write(1, data):]

    def shutdown(self) -> None:
        for slot in self.slots:
            if slot.pid is not None:
                kill_group(slot.pid)
                os.waitpid(slot.pid, 0)
                slot.pid = None
        if self.sweeper:
            for uid in self.uids:
                self.sweeper.sweep(uid)
            self.sweeper.close()
            self.sweeper = None
        self._settle()
        for slot in self.slots:
            remove_tree(slot.config.workdir)
        remove_tree(self.base)  # the trainer's to remove too, unless it is the one that died


def main(argv: list[str]) -> None:
    executor = Executor(json.loads(argv[0]))
    try:
        executor.serve()
    finally:
        executor.shutdown()
