"""The executor's process and file-system chores: namespaces, slot uids, sweeping, reaping,
working directories, and turning a child's exit into a result."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import sys
import sysconfig

from reft.sandbox import _libc
from reft.sandbox.results import ProgramResult, parse_reply

MAX_PIPE = 1 << 20  # the largest program message we hand over (the default pipe-max-size)


def setup_namespaces() -> bool:
    """Move the executor (and so every child) into a new network namespace, which has only a
    loopback device that is down: no TCP, UDP or abstract unix sockets reach anything. Root only."""
    return _libc.unshare(_libc.CLONE_NEWNET | _libc.CLONE_NEWIPC)


def become_subreaper() -> bool:
    """Orphans of programs (double forks) become our children, so we can kill and reap them."""
    return _libc.prctl(_libc.PR_SET_CHILD_SUBREAPER, 1)


def slot_uids(base: int, workers: int) -> list[int] | None:
    """One unused uid per worker slot, so programs running side by side cannot signal each
    other and a slot's leftovers can be swept by uid; None if they are not usable here."""
    uids = [base + slot for slot in range(workers)]
    return uids if _mapped("uid", uids[0], workers) and _mapped("gid", uids[0], workers) else None


def _mapped(kind: str, first: int, count: int) -> bool:
    """Whether ids first .. first+count-1 exist in this user namespace (a container may map
    only a few); without the map file, whether the kernel accepts them."""
    try:
        with open(f"/proc/self/{kind}_map") as f:
            ranges = [tuple(map(int, line.split())) for line in f if line.strip()]
    except OSError:
        return True
    return any(inside <= first and first + count <= inside + length
               for inside, _, length in ranges)


def sweep_uid(uid: int) -> None:
    """Kill every process of this uid, wherever it hid (setsid, double fork).

    ``kill(-1)`` is atomic with respect to fork; with real and effective uid set to ``uid`` it
    reaches exactly that uid's processes, and the saved uid 0 lets us return. While it lasts,
    those processes can signal us too, which is why only the ``Sweeper`` calls this.
    """
    os.setresuid(uid, uid, 0)
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    finally:
        os.setresuid(0, 0, 0)


class Sweeper:
    """A small helper process that sweeps uids on request, so that the executor never takes a
    slot's uid itself (an escaped process could kill it in that moment). If the helper is
    killed in its moment, it is replaced and the sweep repeated."""

    def __init__(self):
        self.pid = None
        self._start()

    def _start(self) -> None:
        requests_r, self.requests = os.pipe()
        self.replies, replies_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                close_all_but({requests_r, replies_w})
                _libc.prctl(_libc.PR_SET_PDEATHSIG, signal.SIGKILL)
                while len(data := os.read(requests_r, 4)) == 4:
                    sweep_uid(int.from_bytes(data, "little"))
                    os.write(replies_w, b"k")
            finally:
                os._exit(0)
        os.close(requests_r)
        os.close(replies_w)

    def sweep(self, uid: int) -> None:
        for _ in range(100):
            try:
                os.write(self.requests, uid.to_bytes(4, "little"))
                if os.read(self.replies, 1) == b"k":
                    return
            except BrokenPipeError:
                pass
            self.close()
            self._start()
        raise RuntimeError(f"could not sweep uid {uid}")

    def close(self) -> None:
        os.close(self.requests)
        os.close(self.replies)
        kill_group(self.pid)
        os.waitpid(self.pid, 0)


def fits(pipe: int, size: int) -> bool:
    """Make the (empty) pipe hold ``size`` bytes if it can; whether it now does."""
    if size > MAX_PIPE:
        return False
    try:
        if size > fcntl.fcntl(pipe, fcntl.F_GETPIPE_SZ):
            fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, size)
    except OSError:  # over this user's pipe quota
        return False
    return True


def close_all_but(keep: set[int]) -> None:
    """Close every descriptor from 3 up except ``keep``."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def kill_group(pid: int) -> None:
    """SIGKILL a child's process group, and the child itself in case it had not made the group."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def children() -> set[int]:
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
        return {int(p) for p in f.read().split()}


def outcome(timed_out: bool, reply: bytes, status: int) -> ProgramResult:
    """A finished child's result from what it said (if anything) and how it ended."""
    if timed_out:
        return ProgramResult(None, "timeout")
    if reply:
        return parse_reply(reply)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return ProgramResult(None, "timeout")
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return ProgramResult(None, f"killed: {name}")
    return ProgramResult(None, f"exit: {os.waitstatus_to_exitcode(status)}")


def workdir_is_clean(path: str, uid: int | None) -> bool:
    """Still an empty directory of ours with mode 0700 (the common case: one lstat, one read)."""
    try:
        st = os.lstat(path)
        with os.scandir(path) as entries:
            empty = next(entries, None) is None
    except OSError:
        return False
    owner = os.geteuid() if uid is None else uid
    return stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 \
        and st.st_uid == owner and empty


def reset_workdir(path: str, uid: int | None) -> None:
    """Empty the slot's directory and give it back its owner and mode, in place (its Landlock
    rule holds the directory itself); recreate it if the program managed to replace it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        st = None
    if st is None:
        os.mkdir(path, 0o700)
    os.chmod(path, 0o700)
    clear_dir(path)
    if uid is not None:
        os.chown(path, uid, uid)


def clear_dir(path: str) -> None:
    """Delete everything inside ``path``, however deep, without following symlinks and without
    recursion: each pass unlinks what is not a directory and moves the contents of every
    subdirectory up into ``path``, then removes the emptied subdirectory."""
    top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    token, moved = os.urandom(6).hex(), 0  # names the program cannot have taken
    try:
        while True:
            with os.scandir(top) as it:
                entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            if not entries:
                return
            for name, is_dir in entries:
                if not is_dir:
                    os.unlink(name, dir_fd=top)
                    continue
                sub = _open_dir(name, top)
                try:
                    with os.scandir(sub) as it:
                        inner = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
                    for item, item_is_dir in inner:
                        if item_is_dir:  # moving a directory rewrites its "..": needs write
                            _unlock(item, sub)
                        moved += 1
                        os.rename(item, f".reft-{token}-{moved}", src_dir_fd=sub, dst_dir_fd=top)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)


def _open_dir(name: str, parent: int) -> int:
    """Open a subdirectory for listing even if the program made it unreadable (we own it)."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except PermissionError:
        _unlock(name, parent)
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)


def _unlock(name: str, parent: int) -> None:
    """chmod 0700 a directory entry without following a symlink: through an O_PATH handle on
    the very inode (root needs none of this; an unprivileged executor owns the files)."""
    if os.geteuid() == 0:
        return
    handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    try:
        os.chmod(f"/proc/self/fd/{handle}", 0o700)
    finally:
        os.close(handle)


def remove_tree(path: str) -> None:
    """Remove a directory the programs wrote into (best effort: never raises)."""
    try:
        clear_dir(path)
        os.rmdir(path)
    except OSError:
        pass


def vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def python_dirs() -> list[str]:
    """What a program may read: the standard library, installed packages, shared libraries."""
    paths = sysconfig.get_paths()
    dirs = [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
    dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    for name in ("sympy", "mpmath", "numpy"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(os.path.dirname(os.path.dirname(module.__file__)))
    return dirs + ["/usr/lib", "/usr/lib64", "/lib", "/lib64"]


def reroute_imports() -> tuple[int, ...]:
    """Send every import through ``/proc/self/fd/N``: ``O_PATH`` descriptors of the ``sys.path``
    directories that lie in ``python_dirs()``, opened now, inherited by every child.

    A child whose uid may not enter a directory above the Python installation (pyenv under a
    0700 ``/root``) can still import from it this way, and so can packages loaded already
    (their ``__path__`` is rewritten too: lazy submodules of sympy, ``encodings.idna``). The
    descriptors reach nothing that Landlock or the uid forbid: both judge the file itself.
    Done once, in the executor, before any child is forked; returns the descriptors.
    """
    allowed = [os.path.realpath(d) for d in python_dirs() if os.path.isdir(d)]
    fds, roots, path = [], {}, []
    for entry in sys.path:
        real = os.path.realpath(entry) if entry else ""
        if not os.path.isdir(real) or not any(real == d or real.startswith(d + os.sep)
                                              for d in allowed):
            continue
        if entry not in roots:
            fd = os.open(real, os.O_PATH | os.O_DIRECTORY)
            fds.append(fd)
            roots[entry] = f"/proc/self/fd/{fd}"
        path.append(roots[entry])
    longest_first = sorted(roots, key=len, reverse=True)

    def moved(name: str) -> str:
        for root in longest_first:
            if name == root or name.startswith(root + os.sep):
                return roots[root] + name[len(root):]
        return name

    for module in list(sys.modules.values()):
        if type(getattr(module, "__path__", None)) is list:
            module.__path__ = [moved(p) for p in module.__path__]
        if isinstance(getattr(module, "__file__", None), str):
            module.__file__ = moved(module.__file__)
    sys.path[:] = path
    sys.path_importer_cache.clear()
    return tuple(fds)
