"""Helpers for the sandbox tests: the secret, and the check that no test leaves a process behind.

Hostile programs that start long-lived processes name them ``rftx<token>`` (via prctl), so a
survivor can be found however it escaped. Besides that marker, every process under a sandbox
uid or below an executor must belong to it at rest: a zygote per worker slot with the next
program's child waiting, and once a sandbox is closed nothing of it may remain at all.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

from reft.sandbox import Sandbox

SECRET_VAR = "REFT_SANDBOX_TEST_SECRET"
SECRET = "s3cr3t-" + uuid.uuid4().hex
TIMEOUT_S = 1.0


@dataclass
class Proc:
    pid: int
    ppid: int
    uid: int
    comm: str


def processes() -> list[Proc]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            found.append(Proc(int(name), int(fields["PPid"]), int(fields["Uid"].split()[0]),
                              fields["Name"].strip()))
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile
    return found


def sandbox_uids(sb: Sandbox) -> set[int]:
    """The slot uids of a sandbox's executors (whether or not they are running)."""
    workers = sb.settings["workers"]
    return {base + slot for base in sb._uid_bases.values() for slot in range(workers)}


def strays(sandboxes: list[Sandbox]) -> list[Proc]:
    """Processes these sandboxes should not have now: marked ones, and any process under their
    uids or below their executors that is not part of an idle executor: its zygotes (and its
    sweeper), each with at most one child (the next program's, waiting), which has none."""
    procs = processes()
    uids = set().union(*(sandbox_uids(sb) for sb in sandboxes))
    executors = {pid for sb in sandboxes if not sb._closed for pid in sb.executor_pids()}
    by_parent: dict[int, list[Proc]] = {}
    for p in procs:
        by_parent.setdefault(p.ppid, []).append(p)
    idle = set()
    workers = max((sb.settings["workers"] for sb in sandboxes), default=0)
    for e in executors:
        zygotes = [z for z in by_parent.get(e, []) if z.uid not in uids]  # escapees: slot uids
        if len(zygotes) > workers + 1:  # a zygote per slot and the sweeper, nothing more
            continue
        for zygote in zygotes:
            waiting = by_parent.get(zygote.pid, [])
            if len(waiting) <= 1 and not any(by_parent.get(w.pid) for w in waiting):
                idle |= {zygote.pid} | {w.pid for w in waiting}
    below = [c for e in executors for z in by_parent.get(e, [])
             for c in [z] + by_parent.get(z.pid, []) + [g for w in by_parent.get(z.pid, [])
                                                         for g in by_parent.get(w.pid, [])]]
    bad = [p for p in procs if p.comm.startswith("rftx")]
    bad += [p for p in procs if p.uid in uids and p.pid not in idle]
    bad += [p for p in below if p.pid not in idle]
    return bad


def assert_no_strays(sandboxes: list[Sandbox], within_s: float = 3.0) -> None:
    """Deaths are asynchronous: allow a moment before calling a process a survivor."""
    end = time.monotonic() + within_s
    while (bad := strays(sandboxes)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not bad, f"processes left behind: {bad}"


