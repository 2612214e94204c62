"""Reading rows from any tabular source, and the generic column-mapped format.

Local files are read directly (JSON array or JSON lines, CSV, Parquet), which is
quick, writes no cache and lets errors name the row. Directories and Hugging Face
dataset names go through ``datasets.load_dataset``. A hub name is tried only after
a short reachability check, because without a network ``datasets`` retries for
tens of seconds before failing.

Rows are ``(row, record)`` pairs; ``row`` counts records from 1 (for JSON lines it
is the line number), and every error message names the source and the row.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from reft.data import fetch
from reft.data.records import Example, split_solution
from reft.errors import UserError, where

Rows = list[tuple[int, dict[str, Any]]]

FIELDS = ("question", "answer", "cot", "id")
DEFAULT_COLUMNS = {
    "question": ("question", "problem", "Problem", "input"),
    "answer": ("answer", "answer_value", "final_answer", "label"),
    "cot": ("cot", "answer_cot", "rationale", "Rationale", "solution"),
    "id": ("id", "item_id", "uid", "idx"),
}
"""Columns tried, in order, for each field when ``--columns`` does not name one."""
FILE_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
HUB_CHECK_TIMEOUT_S = 3.0


def read_json_rows(path: Path) -> Rows:
    """Records of a JSON array, or of JSON lines (``.jsonl``, or a ``.json`` that is one)."""
    text = _read_text(path)
    if path.suffix != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if e.msg != "Extra data":
                raise UserError(
                    f"{path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg})"
                ) from None
        else:
            if not isinstance(data, list):
                raise UserError(f"{path}: expected a JSON array of objects (or JSON lines)")
            return _objects(path, list(enumerate(data, start=1)))
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: line {lineno}: invalid JSON ({e.msg})") from None
    return _objects(path, rows)


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    if not text.strip():
        raise UserError(f"{path}: empty file")
    return text


def _objects(source: object, rows: list[tuple[int, Any]]) -> Rows:
    for row, record in rows:
        if not isinstance(record, dict):
            raise UserError(
                f"{where(source, row)}: expected an object, got {type(record).__name__}"
            )
    return rows


def read_csv_rows(path: Path) -> Rows:
    """Records of a CSV file with a header line; row 1 is the first line after it."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return [(i, dict(r)) for i, r in enumerate(reader, start=1)]
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: invalid CSV ({e})") from None


def read_parquet_rows(path: Path) -> Rows:
    """Records of a Parquet file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise UserError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    return list(enumerate(table.to_pylist(), start=1))


def read_rows(source: str, hf_split: str = "train") -> tuple[str, Rows]:
    """``(label for messages, rows)`` of a local file, a dataset directory or a hub name.

    ``hf_split`` applies to directories and hub names (``NAME:CONFIG`` picks a config,
    e.g. ``openai/gsm8k:main``); a file is one split. A data set name
    (``reft:svamp_test``, ``hf:gsm8k_train``: see ``reft.data.fetch``) is read from
    its cached file, downloaded first if need be.
    """
    if fetch.is_name(source):
        source = str(fetch.resolve(source))
    path = Path(source).expanduser()
    if path.is_file():
        readers = {
            ".json": read_json_rows,
            ".jsonl": read_json_rows,
            ".csv": read_csv_rows,
            ".parquet": read_parquet_rows,
        }
        if path.suffix.lower() not in readers:
            raise UserError(f"{path}: unsupported file type (use {', '.join(FILE_SUFFIXES)})")
        return str(path), readers[path.suffix.lower()](path)
    if path.is_dir():
        label = f"{path}[{hf_split}]"
        return label, _load_dataset(label, str(path), None, hf_split)
    if _looks_like_path(source):
        raise UserError(f"{source}: file not found")
    name, _, config = source.partition(":")
    _check_hub_reachable(source)
    label = f"{source}[{hf_split}]"
    return label, _load_dataset(label, name, config or None, hf_split)


def _looks_like_path(source: str) -> bool:
    """A name that can only be a file path, never a hub id like ``openai/gsm8k``."""
    return (
        source.lower().endswith(FILE_SUFFIXES)
        or source.startswith(("/", ".", "~"))
        or "\\" in source
        or source.count("/") > 1
    )


def _check_hub_reachable(name: str) -> None:
    """Fail in seconds, not after ``datasets``' minute of retries, when offline."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return  # datasets will look in its cache only
    try:
        urllib.request.urlopen(
            urllib.request.Request(constants.ENDPOINT, method="HEAD"),
            timeout=HUB_CHECK_TIMEOUT_S,
        ).close()
    except urllib.error.HTTPError:
        return  # the server answered: it is reachable
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(
            f"{name}: not a local file, and the Hugging Face hub ({constants.ENDPOINT}) "
            f"cannot be reached ({reason}); pass a local path (.json/.jsonl/.parquet/.csv), "
            "or set HF_HUB_OFFLINE=1 to use a dataset already in the cache"
        ) from None


def _load_dataset(label: str, name: str, config: str | None, split: str) -> Rows:
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # datasets raises many types (not found, bad split, offline)
        raise UserError(f"{label}: cannot load dataset ({_first_line(e)})") from None
    return list(enumerate(ds, start=1))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def parse_columns(spec: str) -> dict[str, str]:
    """``"question=problem,answer=label"`` -> ``{"question": "problem", "answer": "label"}``."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = (s.strip() for s in part.partition("="))
        if not sep or not column or field not in FIELDS:
            raise UserError(
                f"--columns: expected FIELD=COLUMN pairs with FIELD one of "
                f"{', '.join(FIELDS)}; got {part!r}"
            )
        mapping[field] = column
    return mapping


def _resolve_columns(label: str, rows: Rows, spec: str) -> dict[str, str]:
    """Field -> column, from ``spec`` or the defaults; checks the columns exist."""
    present = set(rows[0][1])
    mapping = parse_columns(spec)
    for field, column in mapping.items():
        if column not in present:
            raise UserError(
                f"{label}: no column {column!r} for {field} "
                f"(columns: {', '.join(sorted(map(str, present)))})"
            )
    for field in FIELDS:
        if field not in mapping:
            found = next((c for c in DEFAULT_COLUMNS[field] if c in present), None)
            if found is not None:
                mapping[field] = found
    for field in ("question", "answer"):
        if field not in mapping:
            raise UserError(
                f"{label}: no {field} column (columns: {', '.join(sorted(map(str, present)))}); "
                f"map one with --columns {field}=COLUMN"
            )
    return mapping


_GSM8K_FINAL = re.compile(r"\n#### ")


def examples_from_rows(label: str, rows: Rows, columns: str = "") -> list[tuple[int, Example]]:
    """Examples from rows through a column mapping.

    An answer column holding a GSM8K solution (``...\\n#### 72``, as in the hub's
    ``openai/gsm8k``) is split into its CoT and gold when no cot column is mapped.
    """
    if not rows:
        raise UserError(f"{label}: no rows")
    mapping = _resolve_columns(label, rows, columns)
    out = []
    for row, record in rows:
        question = text_field(label, row, record, mapping["question"])
        answer = text_field(label, row, record, mapping["answer"])
        cot_col = mapping.get("cot")
        cot = text_field(label, row, record, cot_col, required=False) if cot_col else None
        if cot_col is None and _GSM8K_FINAL.search(answer):
            cot, answer = split_solution(answer)
        id_col = mapping.get("id")
        ident = text_field(label, row, record, id_col, required=False) if id_col else None
        out.append((row, Example(ident or str(row - 1), question, answer, cot)))
    return out


def text_field(
    label: str, row: int, record: dict[str, Any], key: str, required: bool = True
) -> str | None:
    """A field as stripped text: numbers become strings; missing or blank -> error or None."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, str | int | float | type(None)):
        raise UserError(
            f"{where(label, row)}: field {key!r} must be text or a number, "
            f"got {type(value).__name__}"
        )
    text = "" if value is None else str(value).strip()
    if not text:
        if required:
            state = "missing" if key not in record else "empty"
            raise UserError(f"{where(label, row)}: {state} field {key!r}")
        return None
    return text
