"""GSM8K in its original form (openai/grade-school-math): JSON lines of
``question`` and ``answer``, where ``answer`` is a human-written solution with
``<<48/2=24>>`` calculator notes and a final line ``#### 72``.

The gold is the number after ``####`` without thousands commas; the CoT is the
text before it with the calculator notes removed.
"""

from __future__ import annotations

import re
from pathlib import Path

from reft.data.hf import Rows, text_field
from reft.data.records import GSM8K_FINAL, Example, split_solution
from reft.errors import UserError, where

__all__ = ["examples_from_rows", "split_solution"]


def examples_from_rows(label: str, rows: Rows) -> list[tuple[int, Example]]:
    """Examples from GSM8K records; ids are ``{file stem}_{index}`` (0-based, like ReFT's)."""
    if not rows:
        raise UserError(f"{label}: no rows")
    stem = Path(re.sub(r"\[[^\]]*\]$", "", label)).stem or "gsm8k"
    out = []
    for i, (row, record) in enumerate(rows):
        question = text_field(label, row, record, "question")
        solution = text_field(label, row, record, "answer")
        if GSM8K_FINAL not in solution:
            raise UserError(f"{where(label, row)}: field 'answer' has no final '#### N' line")
        cot, gold = split_solution(solution)
        if not gold:
            raise UserError(f"{where(label, row)}: nothing after '####' in field 'answer'")
        out.append((row, Example(f"{stem}_{i}", question, gold, cot or None)))
    return out
