"""Writing files so that a crash never leaves half of one: a temporary sibling, then a rename.

Every file and folder reft writes is readable by the group and others (0644/0755), as
Hugging Face's own saves are: runs are shared on clusters.

A write the machine refuses (read-only folder, disk full, quota, permissions) is a
``CannotWrite``: one line, ``cannot write PATH: <strerror>``, exit status 1 (an environment
failure, not bad input); a path that cannot be a file or folder (a file where a folder
should be) stays a plain ``UserError`` (exit status 2). Either way no temporary file or
folder is left behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from reft.errors import UserError

_BAD_PATH = (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST)
"""OS errors that say the path itself is wrong (the user's to fix): exit status 2."""


class CannotWrite(UserError):
    """The machine refused a write (read-only, disk full, ...): one line, exit status 1."""

    exit_status = 1


def cannot_write(path: Path | str, e: OSError) -> UserError:
    """The one-line error for ``e`` raised while writing ``path``."""
    cls = UserError if e.errno in _BAD_PATH else CannotWrite
    return cls(f"cannot write {path}: {e.strerror or e}")


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace``: a reader never sees a half-written file. An OS error (read-only
    folder, disk full) is a one-line error (``cannot_write``) and leaves no temporary file."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise cannot_write(path, e) from None
    return path


def write_json_atomic(path: Path, obj: Any) -> Path:
    """``obj`` as indented JSON, written atomically."""
    return write_atomic(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_jsonl_atomic(path: Path, rows: list) -> Path:
    """One JSON object per line, written atomically."""
    return write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def atomic_dir(final: Path) -> Path:
    """A fresh temporary directory beside ``final``; pass it to ``commit_dir`` when written."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    except OSError as e:
        raise cannot_write(final, e) from None
    return tmp


def make_readable(root: Path) -> None:
    """Folders 0755 and files 0644 under ``root`` (itself included), whatever the umask or
    the library that wrote them (safetensors files are made 0600)."""
    os.chmod(root, 0o755)
    for parent, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(parent, d), 0o755)
        for f in files:
            os.chmod(os.path.join(parent, f), 0o644)


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp``, made readable (0755/0644) first; the old copy is
    removed only after the new one is in place. On an OS error ``tmp`` is removed and the
    old ``final`` left as it was."""
    old = None
    try:
        make_readable(tmp)
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
    except OSError as e:
        if old is not None and not final.exists():
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise cannot_write(final, e) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_failure(folder: Path, size: int = 16 << 20) -> OSError | None:
    """Why writing into ``folder`` fails (disk full, quota, file size limit, read-only), found
    by writing up to ``size`` bytes to a scratch file there (removed after); None when that
    works. For libraries that report a failed write without its cause (``torch.save``)."""
    fd, path = None, None
    try:
        fd, path = tempfile.mkstemp(dir=folder, prefix=".probe-")
        chunk = b"\0" * (1 << 20)
        for _ in range(max(1, size >> 20)):
            os.write(fd, chunk)
        os.fsync(fd)
        return None
    except OSError as e:
        return e
    finally:
        if fd is not None:
            os.close(fd)
        if path is not None:
            Path(path).unlink(missing_ok=True)


def remove_dir(path: Path) -> None:
    """Delete the folder ``path``: renamed to a hidden ``.del-*`` sibling first, so that
    a kill in the middle never leaves a half folder under its own name."""
    trash = path.with_name(f".del-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale(folder: Path) -> list[Path]:
    """Clear what a killed write left in ``folder``: ``.tmp-*`` folders (never committed),
    ``.old-*`` ones (already replaced) and ``.del-*`` ones (being deleted). An ``.old-NAME-*`` whose
    ``NAME`` is missing (killed between ``commit_dir``'s two renames) is put back instead.
    Returns the paths removed."""
    removed = []
    for p in [p for pattern in (".old-*", ".tmp-*", ".del-*") for p in sorted(folder.glob(pattern))]:
        if not p.is_dir():
            continue
        name = p.name.split("-", 1)[1].rsplit("-", 1)[0]
        if p.name.startswith(".old-") and not (folder / name).exists():
            os.replace(p, folder / name)
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
