"""Landlock (Linux >= 5.13): an unprivileged process locks itself, and its descendants, out of
most of the file system, TCP, and (ABI >= 6) signalling processes outside the sandbox.

The kernel interface is three system calls; see ``Documentation/userspace-api/landlock.rst``
in the Linux tree for the structures and access bits used here. The executor builds one ruleset
per worker slot: read access to the Python installation, full access to the slot's working
directory and nothing else: no ``execve`` anywhere, no ``/proc`` (so no
``/proc/<pid>/environ``), no ``/tmp``.
"""

from __future__ import annotations

import ctypes
import os

from reft.sandbox import _libc

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446  # same number on every architecture
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

# access_fs bits
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
_MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
_MAKE_SYM, _REFER, _TRUNCATE, _IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
# access_net bits (ABI 4) and scopes (ABI 6)
_BIND_TCP, _CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1

_READ = _READ_FILE | _READ_DIR
_WORKDIR = (_READ | _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_DIR | _MAKE_REG
            | _MAKE_FIFO | _MAKE_SYM | _REFER | _TRUNCATE)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is absent or disabled."""
    version = _libc.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(_CREATE_RULESET_VERSION))
    return max(int(version), 0)


def _handled_fs(version: int) -> int:
    bits = (1 << 13) - 1  # EXECUTE .. MAKE_SYM, ABI 1
    if version >= 2:
        bits |= _REFER
    if version >= 3:
        bits |= _TRUNCATE
    if version >= 5:
        bits |= _IOCTL_DEV
    return bits


def open_paths(paths: list[str]) -> list[int]:
    """``O_PATH`` descriptors for the existing directories among ``paths`` (opened once, in the
    executor, and inherited by every child)."""
    fds, seen = [], set()
    for path in paths:
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        fds.append(os.open(real, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    return fds


def ruleset(version: int, read_fds: list[int], workdir_fd: int) -> int:
    """A ruleset descriptor (made once per worker slot, in the executor): read beneath
    ``read_fds``, read/write beneath ``workdir_fd``; no exec, no TCP (ABI >= 4), no signals or
    abstract sockets beyond the sandbox (ABI >= 6). Raises ``OSError`` if the kernel refuses."""
    handled = _handled_fs(version)
    attr = _RulesetAttr(handled, 0, 0)
    size = 8
    if version >= 4:
        attr.handled_access_net, size = _BIND_TCP | _CONNECT_TCP, 16
    if version >= 6:
        attr.scoped, size = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL, 24
    fd = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                       ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(_libc.errno(), "landlock_create_ruleset")
    rules = [(parent, _READ) for parent in read_fds] + [(workdir_fd, _WORKDIR & handled)]
    for parent, access in rules:
        rule = _PathBeneathAttr(access, parent)
        if _libc.syscall(_ADD_RULE, ctypes.c_int(fd), ctypes.c_int(_RULE_PATH_BENEATH),
                         ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
            os.close(fd)
            raise OSError(_libc.errno(), "landlock_add_rule")
    os.set_inheritable(fd, True)
    return fd


def restrict_self(ruleset_fd: int) -> bool:
    """Enforce the ruleset on the calling process (and all it forks from now on)."""
    if not _libc.prctl(_libc.PR_SET_NO_NEW_PRIVS, 1):
        return False
    return _libc.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0)) == 0


def scope_ruleset(version: int) -> int | None:
    """A ruleset that grants everything but signals and abstract sockets beyond its domain
    (ABI >= 6): a child under the same uid as its zygote then cannot signal the zygote."""
    if version < 6:
        return None
    attr = _RulesetAttr(0, 0, _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL)
    fd = _libc.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(24),
                       ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(_libc.errno(), "landlock_create_ruleset")
    os.set_inheritable(fd, True)
    return fd
