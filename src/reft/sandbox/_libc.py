"""The few Linux calls the standard library lacks (Python 3.11): ``prctl``, ``unshare``, ``syscall``.

Each wrapper returns ``True`` on success and ``False`` on failure, so callers decide whether a
missing feature is fatal (in the program's child it is: the child exits without running the
program) or merely a layer of protection that is not available (in the executor).
"""

from __future__ import annotations

import ctypes

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNET = 0x40000000
CLONE_NEWIPC = 0x08000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def prctl(option: int, arg: int) -> bool:
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0) == 0


def prctl_pointer(option: int, arg: int, pointer: object) -> bool:
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), pointer, 0, 0) == 0


def unshare(flags: int) -> bool:
    return _libc.unshare(ctypes.c_int(flags)) == 0


def syscall(number: int, *args: object) -> int:
    """Raw ``syscall(2)``; returns the result, -1 on failure (see ``errno()``)."""
    return _libc.syscall(ctypes.c_long(number), *args)


def errno() -> int:
    return ctypes.get_errno()
