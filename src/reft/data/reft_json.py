"""The ReFT release's format (lqtrung1998/mwp_ReFT): a JSON array of objects with
``item_id``, ``question``, ``answer_value`` and, in training files, ``answer_cot``.

Used for GSM8K, SVAMP, MathQA (``answer_value`` a letter a-e) and MathQA-numeric,
for N-CoT files (``answer_cot`` natural language ending ``Therefore, the answer is
<203>.``) and P-CoT files (``answer_cot`` a program ``def solution(): ...``).
Golds are kept as given (``"203.0"``); ``load_examples`` strips the closing answer
sentence of N-CoTs.
"""

from __future__ import annotations

from reft.data.hf import Rows, text_field
from reft.data.records import Example
from reft.errors import UserError


def examples_from_rows(label: str, rows: Rows) -> list[tuple[int, Example]]:
    """Examples from ReFT records; a missing ``item_id`` becomes the 0-based index."""
    if not rows:
        raise UserError(f"{label}: no rows")
    out = []
    for i, (row, record) in enumerate(rows):
        question = text_field(label, row, record, "question")
        answer = text_field(label, row, record, "answer_value")
        cot = text_field(label, row, record, "answer_cot", required=False)
        ident = text_field(label, row, record, "item_id", required=False) or str(i)
        out.append((row, Example(ident, question, answer, cot)))
    return out
