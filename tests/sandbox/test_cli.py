"""``reft exec FILE``: the formats it reads, what it prints, and the one-line errors."""

from __future__ import annotations

import argparse
import json
import subprocess

import pytest

from reft.cli.commands import exec_programs as main
from reft.errors import UserError
from reft.sandbox.programs_file import load_programs

PROGRAM = "def solution():\n    return 6 * 7\n"


def test_exec_prints_one_line_per_program(tmp_path, python):
    path = tmp_path / "programs.json"
    path.write_text(json.dumps([
        PROGRAM,
        {"program": "def solution():\n    return 1 / 0\n"},
        {"item_id": "svamp_0", "answer_cot": "def solution():\n    return 'x'\n", "answer_value": "1"},
        "def solution():\n    while True:\n        pass\n",
    ]))
    done = subprocess.run([python, "-m", "reft", "exec", str(path), "--timeout-s", "0.5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines == [
        {"index": 0, "value": 42.0, "error": None},
        {"index": 1, "value": None, "error": "exception: ZeroDivisionError"},
        {"index": 2, "value": "x", "error": None},
        {"index": 3, "value": None, "error": "timeout"},
    ]
    assert "4 programs, 2 ok" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_bad_file_is_one_line_exit_2(tmp_path, python):
    path = tmp_path / "bad.json"
    path.write_text("[1, 2")
    done = subprocess.run([python, "-m", "reft", "exec", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert str(path) in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("{", "not valid JSON"),
    ('{"program": "x"}', "expected a JSON array"),
    ('["def solution(): return 1", 5]', "row 1"),
    ('[{"answer": "x"}]', "row 0"),
    ('[{"program": 3}]', "row 0"),
])
def test_load_errors_name_the_file_and_row(tmp_path, content, message):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as info:
        load_programs(path)
    assert str(path) in str(info.value)


def test_formats(tmp_path):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([PROGRAM, {"program": PROGRAM}, {"answer_cot": PROGRAM}]))
    assert load_programs(path) == [PROGRAM] * 3


def test_bad_timeout(tmp_path):
    with pytest.raises(UserError, match="timeout"):
        main(argparse.Namespace(file=str(tmp_path / "x.json"), timeout_s=0))
