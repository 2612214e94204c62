"""``reft exec FILE``: run the programs in a JSON file in the sandbox.

FILE holds a JSON array whose items are program strings, objects with a ``program`` string, or
ReFT records (objects with an ``answer_cot`` string). One JSON line per program goes to stdout,
``{"index", "value", "error"}``, and a one-line summary to stderr.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

from reft.errors import UserError, where
from reft.sandbox.client import Sandbox


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


def main(args: argparse.Namespace) -> int:
    timeout_s = float(args.timeout_s)
    if not timeout_s > 0:
        raise UserError(f"--timeout-s must be positive, got {args.timeout_s}")
    programs = load_programs(Path(args.file))
    start = time.monotonic()
    with Sandbox(timeout_s=timeout_s) as sandbox:
        results = sandbox.run(programs)
    elapsed = time.monotonic() - start
    out = sys.stdout
    for i, result in enumerate(results):
        out.write(json.dumps({"index": i, "value": result.value, "error": result.error}) + "\n")
    out.flush()
    kinds = collections.Counter(r.kind for r in results if not r.ok)
    failed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    print(f"reft exec: {len(results)} programs, {len(results) - sum(kinds.values())} ok"
          f"{'; failed: ' + failed if failed else ''} ({elapsed:.1f}s)", file=sys.stderr)
    return 0
