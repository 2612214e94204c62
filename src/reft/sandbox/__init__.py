"""Running model-written programs (P-CoT) safely and fast.

    from reft.sandbox import run_programs
    results = run_programs(programs, timeout_s=3.0)   # one ProgramResult per program, in order

Each program is a full source text defining ``solution()``. Long-lived executor processes
(started once: one with ``math``, one with ``sympy`` too, for the programs that use it) keep a
locked-down zygote per worker slot, which forks a fresh child per program. The child runs in
a session of its own, under resource limits (address space, CPU, file size, descriptors,
processes), its own uid when we are root, Landlock rules where the kernel has them (read only
the Python installation, write only its private working directory, no exec, no TCP, no signals
outside the sandbox), a seccomp filter (no sockets, namespaces, ptrace, io_uring, ...), no
network interfaces (as root), an empty environment and ``/dev/null`` for stdio. Its result is
reduced to a float or a short string inside the child and comes back as a small JSON line,
checked twice. See ``client.py`` for the trainer's side, ``executor.py``, ``zygote.py`` and
``child.py`` for the rest; the threat model, and what is left when we are not root, are in
``README.md`` beside this file.
"""

from __future__ import annotations

import _thread
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reft.sandbox.client import Sandbox
    from reft.sandbox.results import ProgramResult

__all__ = ["ProgramResult", "Sandbox", "default_sandbox", "run_programs"]

_default: Sandbox | None = None
_default_options: dict = {}
_lock = _thread.allocate_lock()  # not threading: the executor imports this package, and
# threading's after-fork hook costs every forked child a hundred page faults


def __getattr__(name: str):
    """``Sandbox`` and ``ProgramResult`` on first use: the executor imports this package too,
    and every module it holds makes each fork dearer."""
    if name == "Sandbox":
        from reft.sandbox.client import Sandbox
        return Sandbox
    if name == "ProgramResult":
        from reft.sandbox.results import ProgramResult
        return ProgramResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_sandbox(**options) -> Sandbox:
    """The shared ``Sandbox`` (created on first use; call early to start the executor while the
    trainer loads its model). Different ``options`` replace it."""
    global _default, _default_options
    with _lock:
        if _default is not None and (_default_options != options or _default._closed):
            _default.close()
            _default = None
        if _default is None:
            from reft.sandbox.client import Sandbox
            _default, _default_options = Sandbox(**options), dict(options)
        return _default


def run_programs(programs: Sequence[str], timeout_s: float = 3.0, **options) -> list[ProgramResult]:
    """Run each program's ``solution()`` in the shared sandbox; results in order, one each.
    ``options`` are ``Sandbox`` options (workers, memory_mb, ...)."""
    return default_sandbox(**options).run(programs, timeout_s=timeout_s)
