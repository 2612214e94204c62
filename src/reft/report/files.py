"""Reading run files and writing report files atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reft.errors import UserError, where
from reft.runtime.io import write_atomic as atomic_write

__all__ = ["atomic_write", "read_json", "read_json_object"]




def read_json(path: Path) -> Any:
    """A JSON file, or ``UserError`` naming the file when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {where(path)}: {e}") from None


def read_json_object(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{where(path)}: expected a JSON object, got {type(data).__name__}")
    return data


def read_jsonl(path: Path) -> list[dict]:
    """One dict per non-blank line. A broken *last* line is dropped (the run may still
    be writing it); a broken line anywhere else is a ``UserError``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {where(path)}: {e}") from None
    numbered = [(i, line) for i, line in enumerate(lines, start=1) if line.strip()]
    rows: list[dict] = []
    for pos, (row, line) in enumerate(numbered):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if pos == len(numbered) - 1:
                break
            raise UserError(f"{where(path, row)}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where(path, row)}: expected a JSON object")
        rows.append(obj)
    return rows


def read_yaml(path: Path) -> dict:
    """A YAML mapping (``config.yaml``), or ``UserError``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"cannot read {where(path)}: {' '.join(str(e).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{where(path)}: expected a mapping of settings")
    return data
