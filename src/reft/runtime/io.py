"""Writing files so that a crash never leaves half of one: a temporary sibling, then a rename.

Every file and folder reft writes is readable by the group and others (0644/0755), as
Hugging Face's own saves are: runs are shared on clusters.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from reft.errors import UserError


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and
    ``os.replace``: a reader never sees a half-written file. An OS error (read-only
    folder, disk full) is a one-line ``UserError`` and leaves no temporary file."""
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
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def write_json_atomic(path: Path, obj: Any) -> Path:
    """``obj`` as indented JSON, written atomically."""
    return write_atomic(path, json.dumps(obj, indent=2, default=float) + "\n")


def write_jsonl_atomic(path: Path, rows: list) -> Path:
    """One JSON object per line, written atomically."""
    return write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def atomic_dir(final: Path) -> Path:
    """A fresh temporary directory beside ``final``; pass it to ``commit_dir`` when written."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes 0700
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (old copy removed only after the new one is in place)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
