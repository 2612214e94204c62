"""Malformed input is a one-line UserError naming the file and the row (or line)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from reft.data import load_examples
from reft.errors import UserError

GOOD_GSM8K = {"question": "Q?", "answer": "1 + 1 = 2\n#### 2"}
GOOD_REFT = {"item_id": "x_0", "question": "Q?", "answer_value": "2.0", "answer_cot": "1 + 1 = 2"}


def jsonl(*rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


# (file name, contents, load_examples keywords, message pattern after the file name)
CASES = [
    ("empty.jsonl", "", {}, r": empty file"),
    ("blank.json", "  \n\n", {}, r": empty file"),
    (
        "bad.jsonl",
        jsonl(GOOD_GSM8K, '{"question": "Q?", "answer": '),
        {},
        r": line 2: invalid JSON \(Expecting value\)",
    ),
    (
        "bad.json",
        '[{"question": "Q?",\n  "answer_value": 3,}]',
        {},
        r": invalid JSON at line 2 column 21 ",
    ),
    ("object.json", '{"question": "Q?"}', {}, r": expected a JSON array of objects"),
    ("empty_array.json", "[]", {}, r": no rows"),
    ("scalar_row.json", json.dumps([GOOD_REFT, 5]), {}, r": row 2: expected an object, got int"),
    (
        "no_question.json",
        json.dumps([GOOD_REFT, {"item_id": "x_1", "answer_value": "3"}]),
        {},
        r": row 2: missing field 'question'",
    ),
    (
        "empty_question.jsonl",
        jsonl(GOOD_GSM8K, GOOD_GSM8K, {"question": " ", "answer": "#### 1"}),
        {},
        r": row 3: empty field 'question'",
    ),
    (
        "no_final.jsonl",
        jsonl(GOOD_GSM8K, {"question": "Q?", "answer": "1 + 1 = 2"}),
        {"data_format": "gsm8k"},
        r": row 2: field 'answer' has no final '#### N' line",
    ),
    (
        "list_value.json",
        json.dumps([{**GOOD_REFT, "answer_value": [1, 2]}]),
        {},
        r": row 1: field 'answer_value' must be text or a number, got list",
    ),
    (
        "not_number.json",
        json.dumps([GOOD_REFT, GOOD_REFT, {**GOOD_REFT, "answer_value": "twelve"}]),
        {},
        r": row 3: gold answer 'twelve' is not a number",
    ),
    (
        "not_number.jsonl",
        jsonl(GOOD_GSM8K, {"question": "Q?", "answer": "#### twelve"}),
        {},
        r": row 2: gold answer 'twelve' is not a number",
    ),
    (
        "not_letter.json",
        json.dumps([{**GOOD_REFT, "answer_value": "a"}, {**GOOD_REFT, "answer_value": "38"}]),
        {"task": "mc"},
        r": row 2: gold answer '38' is not a letter a-e",
    ),
    (
        "letter_f.json",
        json.dumps([{**GOOD_REFT, "answer_value": "f"}]),
        {"task": "mc"},
        r": row 1: gold answer 'f' is not a letter a-e",
    ),
    (
        "no_cot.json",
        json.dumps([GOOD_REFT, {**GOOD_REFT, "answer_cot": None}]),
        {"require_cot": True},
        r": row 2: no chain of thought",
    ),
    (
        "only_answer_cot.json",
        json.dumps([{**GOOD_REFT, "answer_cot": "Therefore, the answer is <2>."}]),
        {"require_cot": True},
        r": row 1: no chain of thought",
    ),
    ("bad.csv", "question,answer\nQ?,\n", {}, r": row 1: empty field 'answer'"),
    ("bad.parquet", "not parquet at all", {}, r": not a readable Parquet file"),
    ("latin1.jsonl", "caf\xe9", {}, r": not UTF-8 text"),
    ("data.txt", "hello", {}, r": unsupported file type"),
]


@pytest.mark.parametrize(("name", "text", "kwargs", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_malformed_input_names_file_and_row(tmp_path, name, text, kwargs, pattern):
    path = tmp_path / name
    path.write_bytes(text.encode("latin-1" if name.startswith("latin1") else "utf-8"))
    with pytest.raises(UserError) as info:
        load_examples(str(path), **kwargs)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_gsm8k_gold_commas_are_thousands_only(tmp_path):
    # "#### 1,234" is 1234; a comma that is not a thousands separator is still removed,
    # as in GSM8K's own answer extraction, so "1,2" reads as "12".
    path = tmp_path / "g.jsonl"
    path.write_text(jsonl({"question": "Q?", "answer": "#### 1,2"}))
    assert load_examples(str(path))[0].answer == "12"


def test_missing_file():
    with pytest.raises(UserError, match=r"^/no/such/dir/train\.jsonl: file not found$"):
        load_examples("/no/such/dir/train.jsonl")


def test_only_the_used_rows_are_checked(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(jsonl(GOOD_GSM8K, {"question": "Q?", "answer": "#### banana"}))
    assert len(load_examples(str(path), max_examples=1)) == 1


def _check(python, *args):
    return subprocess.run(
        [python, "-m", "reft", "data", "check", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_reports_bad_file_in_one_line(tmp_path, python):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([GOOD_REFT, {"item_id": "x_1", "question": "Q?"}]))
    result = _check(python, str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0] and "row 2" in lines[0] and "answer_value" in lines[0]


def test_cli_check_prints_summary(tmp_path, python):
    good = tmp_path / "good.json"
    good.write_text(json.dumps([GOOD_REFT, {**GOOD_REFT, "item_id": "x_1", "answer_cot": None}]))
    result = _check(python, str(good))
    assert result.returncode == 0, result.stderr
    assert "2 examples, format reft" in result.stdout
    assert "with a chain of thought: 1" in result.stdout
    assert "id: x_0" in result.stdout


def test_cli_bad_task_for_data(tmp_path, python):
    letters = tmp_path / "mc.json"
    letters.write_text(json.dumps([{**GOOD_REFT, "answer_value": "c"}]))
    assert _check(python, str(letters), "--task", "mc").returncode == 0
    result = _check(python, str(letters))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{letters}: row 1: gold answer 'c' is not a number" in result.stderr
