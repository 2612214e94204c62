"""Loaders on small files written in tmp_path: each format, auto-detection, mappings."""

from __future__ import annotations

import csv
import json

import pytest

from reft.data import Example, load_examples
from reft.errors import UserError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GSM8K_ROWS = [
    {"question": "Q1?", "answer": "Half is 48/2 = <<48/2=24>>24.\n#### 24"},
    {"question": "Q2?", "answer": "It costs 1000+234 = $<<1000+234=1234>>1,234.\n#### 1,234"},
]
REFT_ROWS = [
    {
        "item_id": "svamp_0",
        "question": "Q1?",
        "answer_value": "203.0",
        "answer_cot": "29 * 7 = 203\n\nTherefore, the answer is <203>.",
    },
    {
        "item_id": "svamp_1",
        "question": "Q2?",
        "answer_value": "4.0",
        "answer_cot": "Already answered. The answer is <4>.",
    },
]


def test_gsm8k_format(tmp_path):
    ex = load_examples(write_jsonl(tmp_path / "train.jsonl", GSM8K_ROWS))
    assert ex == [
        Example("train_0", "Q1?", "24", "Half is 48/2 = 24."),
        Example("train_1", "Q2?", "1234", "It costs 1000+234 = $1,234."),
    ]


def test_reft_format_strips_nl_answer_sentence(tmp_path):
    path = tmp_path / "svamp.json"
    path.write_text(json.dumps(REFT_ROWS))
    ex = load_examples(str(path), require_cot=True)
    assert ex == [
        Example("svamp_0", "Q1?", "203.0", "29 * 7 = 203"),
        Example("svamp_1", "Q2?", "4.0", "Already answered."),
    ]


def test_reft_format_keeps_programs_whole(tmp_path):
    program = 'def solution():\n    """Q1?"""\n    result = 29 * 7\n    return result'
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [{"item_id": "a", "question": "Q1?", "answer_value": "203.0", "answer_cot": program}]
        )
    )
    assert load_examples(str(path), cot="python")[0].cot == program


def test_reft_format_numbers_and_missing_ids(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"question": "Q?", "answer_value": 18}]))
    assert load_examples(str(path)) == [Example("0", "Q?", "18", None)]


def test_explicit_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", REFT_ROWS)  # ReFT records as JSON lines
    assert load_examples(path, data_format="reft")[0].answer == "203.0"
    assert load_examples(path)[0].answer == "203.0"  # auto also sees answer_value


def test_max_examples(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", GSM8K_ROWS)
    assert [e.id for e in load_examples(path, max_examples=1)] == ["train_0"]


HF_ROWS = [
    {"uid": "p1", "problem": "How many?", "label": 5, "rationale": "2 + 3 = 5"},
    {"uid": "p2", "problem": "How much?", "label": 2.5, "rationale": "5 / 2 = 2.5"},
]
MAPPING = "question=problem,answer=label,cot=rationale,id=uid"
EXPECTED = [
    Example("p1", "How many?", "5", "2 + 3 = 5"),
    Example("p2", "How much?", "2.5", "5 / 2 = 2.5"),
]


def test_hf_parquet_with_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(HF_ROWS), path)
    got = load_examples(str(path), columns=MAPPING)
    # Parquet stores the label column as float64, so 5 reads back as 5.0 (gold kept as given)
    assert got == [Example("p1", "How many?", "5.0", "2 + 3 = 5"), EXPECTED[1]]


def test_hf_csv_with_mapping(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(HF_ROWS[0]))
        writer.writeheader()
        writer.writerows(HF_ROWS)
    assert load_examples(str(path), columns=MAPPING) == EXPECTED


def test_hf_csv_multiline_field(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('question,answer,cot\n"Q?",7,"line one\nline two"\n')
    assert load_examples(str(path)) == [Example("0", "Q?", "7", "line one\nline two")]


def test_hf_jsonl_with_mapping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", HF_ROWS)
    assert load_examples(path, columns=MAPPING) == EXPECTED
    assert load_examples(path, columns=MAPPING, data_format="hf") == EXPECTED


def test_hf_default_columns(tmp_path):
    assert load_examples(write_jsonl(tmp_path / "a.jsonl", HF_ROWS)) == EXPECTED
    path = write_jsonl(
        tmp_path / "d.jsonl", [{"id": 9, "question": "Q?", "answer": "c", "cot": "why"}]
    )
    assert load_examples(path, task="mc") == [Example("9", "Q?", "c", "why")]


def test_hf_gsm8k_style_answer_column_is_split(tmp_path):
    path = tmp_path / "d.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(GSM8K_ROWS), path)  # as the hub's openai/gsm8k
    assert load_examples(str(path))[1] == Example(
        "d_1", "Q2?", "1234", "It costs 1000+234 = $1,234."
    )
    assert load_examples(str(path), data_format="hf")[1] == Example(
        "1", "Q2?", "1234", "It costs 1000+234 = $1,234."
    )


def test_hf_unknown_column_names_the_columns(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", HF_ROWS)
    with pytest.raises(
        UserError, match=r"d.jsonl: no column 'problme' for question \(columns: label, "
    ):
        load_examples(path, columns="question=problme,answer=label")
    unknown = write_jsonl(tmp_path / "u.jsonl", [{"text": "Q?", "label": 5}])
    with pytest.raises(
        UserError, match=r"u.jsonl: no question column .* --columns question=COLUMN"
    ):
        load_examples(unknown)
    with pytest.raises(UserError, match="--columns: expected FIELD=COLUMN"):
        load_examples(path, columns="query=problem")


@pytest.mark.timeout(60)
def test_unreachable_hub_name_fails_fast_with_a_hint():
    # No network here: the hub check fails at once instead of datasets' retries.
    # (With a network the name does not exist, which is also a one-line UserError.)
    with pytest.raises(UserError, match="reft-no-such-user/no-such-dataset") as info:
        load_examples("reft-no-such-user/no-such-dataset")
    assert "\n" not in str(info.value)


def test_path_like_missing_source_is_file_not_found(tmp_path):
    for source in [str(tmp_path / "nope.json"), "data/train.parquet", "./x"]:
        with pytest.raises(UserError, match="file not found"):
            load_examples(source)


def test_bad_option_values():
    with pytest.raises(UserError, match="--task"):
        load_examples("x.json", task="yes/no")
    with pytest.raises(UserError, match="--data-format"):
        load_examples("x.json", data_format="xml")
    with pytest.raises(UserError, match="--cot"):
        load_examples("x.json", cot="latex")
