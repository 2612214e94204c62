"""How many programs a process runs at once when no one says: its share of the machine.

Every worker slot is a zygote in each of the two executors plus the child it forks, so a
trainer process that took every visible CPU would, with N processes per machine, start ~4N
processes per CPU. A process takes the CPUs it may run on divided among the training
processes on its machine, within a cap.
"""

from __future__ import annotations

import os

DEFAULT_MAX_WORKERS = 32
"""Cap on the default worker slots of a process: a rank scores a few dozen programs a step,
each over in milliseconds unless it runs into its timeout, and every slot is a zygote per
executor (two) plus the child it forks."""
_LOCAL_SIZE_VARS = ("LOCAL_WORLD_SIZE", "LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE")
"""Processes of the job on this machine: torchrun and accelerate launch, DeepSpeed's
launcher, Open MPI."""


def local_world_size(environ=os.environ) -> int:
    """The training processes on this machine, from the launcher's environment (1 when none
    says, or says something that is not a positive integer)."""
    for var in _LOCAL_SIZE_VARS:
        try:
            n = int(environ.get(var, ""))
        except ValueError:
            continue
        if n >= 1:
            return n
    return 1


def default_workers(cpus: int | None = None, local_size: int | None = None) -> int:
    """Worker slots for a ``Sandbox`` given none: the CPUs this process may run on
    (``sched_getaffinity``) shared among the training processes on this machine
    (``local_world_size``), at least 1 and at most ``DEFAULT_MAX_WORKERS``. Ranks pinned to
    disjoint CPU sets by their launcher get a smaller share than they could use: pass
    ``workers`` there."""
    cpus = len(os.sched_getaffinity(0)) if cpus is None else cpus
    local_size = local_world_size() if local_size is None else local_size
    return max(1, min(DEFAULT_MAX_WORKERS, cpus // max(1, local_size)))
