"""A small seccomp filter: the system calls a math program never needs, and that reach past
what Landlock and the uid cover, fail with EPERM.

- ``socket``/``connect``: Landlock (ABI < 8) does not cover connecting to a unix socket by
  path (a session bus, syslog, an X server), nor UDP without a network namespace;
- ``io_uring_*``: its operations are not system calls, so this filter could not see them;
- namespaces (``unshare``, ``setns``, ``clone`` with a CLONE_NEW* flag; ``clone3`` says ENOSYS,
  so the C library falls back to ``clone``), ``mount``, ``ptrace``, ``bpf``,
  ``perf_event_open``, ``userfaultfd``, key rings, ``*_by_handle_at``, module and kexec
  loading: kernel attack surface with no use in a math program.

Any other architecture's system call convention (i386 through ``int 0x80``, x32) kills the
process: the numbers below would not mean the same calls there. The filter is built once in
the executor and installed by each child, after ``no_new_privs``; see the kernel's
``Documentation/userspace-api/seccomp_filter.rst`` for the BPF layout used.
"""

from __future__ import annotations

import ctypes
import errno
import platform

from reft.sandbox import _libc

_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LD_ABS_W, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian low word of arg 0)
_CLONE_NEW = 0x7E020080  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME

_DENY = ("socket", "connect", "io_uring_setup", "io_uring_enter", "io_uring_register", "unshare",
         "setns", "mount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
         "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
         "request_key", "name_to_handle_at", "open_by_handle_at", "kexec_load", "init_module",
         "finit_module")
_TABLES = {  # machine -> (audit arch, system call numbers)
    "x86_64": (0xC000003E, dict(
        socket=41, connect=42, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
        unshare=272, setns=308, mount=165, umount2=166, pivot_root=155, chroot=161, ptrace=101,
        process_vm_readv=310, process_vm_writev=311, bpf=321, perf_event_open=298,
        userfaultfd=323, keyctl=250, add_key=248, request_key=249, name_to_handle_at=303,
        open_by_handle_at=304, kexec_load=246, init_module=175, finit_module=313, clone=56,
        clone3=435)),
    "aarch64": (0xC00000B7, dict(
        socket=198, connect=203, io_uring_setup=425, io_uring_enter=426, io_uring_register=427,
        unshare=97, setns=268, mount=40, umount2=39, pivot_root=41, chroot=51, ptrace=117,
        process_vm_readv=270, process_vm_writev=271, bpf=280, perf_event_open=241,
        userfaultfd=282, keyctl=219, add_key=217, request_key=218, name_to_handle_at=264,
        open_by_handle_at=265, kexec_load=104, init_module=105, finit_module=273, clone=220,
        clone3=435)),
}


class _Instruction(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def _program(arch: int, numbers: dict[str, int]) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) rows; jumps count the rows they skip."""
    eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    rows = [(_LD_ABS_W, 0, 0, _ARCH), (_JEQ_K, 1, 0, arch), (_RET_K, 0, 0, _RET_KILL_PROCESS),
            (_LD_ABS_W, 0, 0, _NR), (_JGE_K, 0, 1, 0x40000000), (_RET_K, 0, 0, _RET_KILL_PROCESS)]
    for name in _DENY:
        rows += [(_JEQ_K, 0, 1, numbers[name]), (_RET_K, 0, 0, eperm)]
    rows += [(_JEQ_K, 0, 1, numbers["clone3"]), (_RET_K, 0, 0, enosys)]
    rows += [(_JEQ_K, 0, 3, numbers["clone"]), (_LD_ABS_W, 0, 0, _ARG0),
             (_JSET_K, 0, 1, _CLONE_NEW), (_RET_K, 0, 0, eperm)]
    return rows + [(_RET_K, 0, 0, _RET_ALLOW)]


class Filter:
    """Built once in the executor; each child calls ``install()``. ``available`` is False on
    machines whose system call table is not listed here."""

    def __init__(self):
        table = _TABLES.get(platform.machine())
        self.available = table is not None
        if not self.available:
            return
        rows = _program(*table)
        self._rows = (_Instruction * len(rows))(*(_Instruction(*row) for row in rows))
        self._fprog = _Program(len(rows), ctypes.cast(self._rows, ctypes.POINTER(_Instruction)))

    def install(self) -> bool:
        """Apply to the calling process and all it forks after. Needs ``no_new_privs``."""
        if not self.available or not _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1):
            return False
        return _libc.prctl_pointer(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog))
