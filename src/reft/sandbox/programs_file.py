"""Reading the programs of ``reft exec FILE`` (run by ``reft.cli.commands.exec_programs``).

FILE holds a JSON array whose items are program strings, objects with a ``program`` string, or
ReFT records (objects with an ``answer_cot`` string). One JSON line per program goes to stdout,
``{"index", "value", "error"}``, and a one-line summary to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

from reft.errors import UserError, where


def load_programs(path: Path) -> list[str]:
    """The program texts in ``path``; ``UserError`` naming the file (and row) if it is bad."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(rows, list):
        raise UserError(f"{path}: expected a JSON array of programs, got {type(rows).__name__}")
    programs = []
    for i, row in enumerate(rows):
        program = row
        if isinstance(row, dict):
            program = row.get("program", row.get("answer_cot"))
        if not isinstance(program, str):
            raise UserError(f"{where(path, i)}: expected a program string or an object with a "
                            "'program' (or 'answer_cot') string")
        programs.append(program)
    return programs
