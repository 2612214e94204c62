"""Loading math word problems from any supported source into ``Example`` records.

One entry point, ``load_examples``, for every format:

- ``gsm8k``: the original GSM8K JSON lines (``question``, ``answer`` ending ``#### N``);
- ``reft``: the ReFT release's JSON arrays (``item_id``, ``question``, ``answer_cot``,
  ``answer_value``) for GSM8K, SVAMP, MathQA and MathQA-numeric, N-CoT and P-CoT;
- ``hf``: any JSON/JSON-lines/CSV/Parquet file, dataset directory or Hugging Face
  dataset name, through a column mapping (``--columns question=problem,answer=label``).

``auto`` picks ``reft`` when records have ``answer_value``, ``gsm8k`` when their
``answer`` holds a ``####`` line, else ``hf``. Every problem with the input is a
``UserError`` whose one line names the file and the row.
"""

from __future__ import annotations

import dataclasses
import re

from reft.answers import COTS, TASKS, parse_number, strip_answer_sentence
from reft.config import SourceArgs
from reft.data import gsm8k, hf, reft_json
from reft.data.records import Example
from reft.errors import UserError, where

__all__ = ["Example", "detect_format", "load_examples", "read_source"]

FORMATS = SourceArgs.CHOICES["data_format"]
_CONVERTERS = {
    "gsm8k": gsm8k.examples_from_rows,
    "reft": reft_json.examples_from_rows,
}
_MC_GOLD = re.compile(r"\(?\s?[a-eA-E]\s?\)?")


def detect_format(rows: hf.Rows, columns: str = "") -> str:
    """``reft``, ``gsm8k`` or ``hf`` from the first record (``hf`` whenever columns are mapped)."""
    if columns or not rows:
        return "hf"
    first = rows[0][1]
    if "answer_value" in first:
        return "reft"
    answer = first.get("answer")
    if isinstance(answer, str) and "####" in answer:
        return "gsm8k"
    return "hf"


def _check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"{name}: must be one of {', '.join(allowed)}; got {value!r}")


def _read(
    source: str, data_format: str, columns: str, hf_split: str, max_examples: int
) -> tuple[str, str, list[tuple[int, Example]]]:
    """(format used, label for messages, (row, example) pairs) before task checks."""
    _check_choice("--data-format", data_format, FORMATS)
    if max_examples < 0:
        raise UserError(f"--max-examples: must be >= 0; got {max_examples}")
    if not str(source).strip():
        raise UserError("no data source given (a file or a Hugging Face dataset name)")
    label, rows = hf.read_rows(str(source), hf_split)
    if not rows:
        raise UserError(f"{label}: no rows")
    if max_examples:
        rows = rows[:max_examples]
    fmt = detect_format(rows, columns) if data_format == "auto" else data_format
    if fmt == "hf":
        return fmt, label, hf.examples_from_rows(label, rows, columns)
    return fmt, label, _CONVERTERS[fmt](label, rows)


def _finish(label: str, row: int, ex: Example, task: str, cot: str, require_cot: bool) -> Example:
    """Check the gold against the task, tidy the CoT, and demand one if training."""
    if task == "numeric" and parse_number(ex.answer) is None:
        raise UserError(
            f"{where(label, row)}: gold answer {ex.answer[:50]!r} is not a number "
            "(for multiple choice use --task mc)"
        )
    if task == "mc" and not _MC_GOLD.fullmatch(ex.answer):
        raise UserError(
            f"{where(label, row)}: gold answer {ex.answer[:50]!r} is not a letter a-e (--task mc)"
        )
    if cot == "nl" and ex.cot:
        ex = dataclasses.replace(ex, cot=strip_answer_sentence(ex.cot) or None)
    if require_cot and not ex.cot:
        raise UserError(
            f"{where(label, row)}: no chain of thought (training needs one per example)"
        )
    return ex


def load_examples(
    source: str,
    *,
    data_format: str = "auto",
    columns: str = "",
    task: str = "numeric",
    cot: str = "nl",
    hf_split: str = "train",
    max_examples: int = 0,
    require_cot: bool = False,
) -> list[Example]:
    """Read ``source`` (a file, a dataset directory or a hub name) into examples.

    With ``cot="nl"`` a closing ``Therefore, the answer is ...`` sentence is removed
    from each CoT; ``require_cot`` (training) makes a missing CoT an error;
    ``max_examples`` keeps only the first N records.
    """
    _check_choice("--task", task, TASKS)
    _check_choice("--cot", cot, COTS)
    _, label, pairs = _read(source, data_format, columns, hf_split, max_examples)
    return [_finish(label, row, ex, task, cot, require_cot) for row, ex in pairs]


def read_source(source: str, data_format: str = "auto", columns: str = "", hf_split: str = "train",
                task: str = "numeric") -> tuple[str, str, list[Example]]:
    """(format used, label for messages, examples) of any source, CoTs optional (``reft
    data check``)."""
    _check_choice("--task", task, TASKS)
    fmt, label, pairs = _read(source, data_format, columns, hf_split, 0)
    return fmt, label, [_finish(label, row, ex, task, "nl", False) for row, ex in pairs]
