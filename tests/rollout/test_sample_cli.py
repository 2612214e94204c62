"""``reft sample``: k samples per question to JSON lines (tier 3), and a rerun after a kill
continues the file to exactly what an uninterrupted run writes."""

from __future__ import annotations

import json

import pytest

from reft.config import SamplingConfig
from tests.fixtures import N_TEST, reft_main, run_reft

K = 2


def _sample_args(model, data, out, batch_size):
    return ["sample", "--model", model, "--data-file", data, "--out", out, "--k", K,
            "--gen-batch-size", batch_size, "--max-new-tokens", 12, "--seed", 3]


def test_sample_cli_writes_k_samples_per_question(tmp_path, tiny_model_dir, tiny_data):
    proc = run_reft(*_sample_args(tiny_model_dir, tiny_data.test, "s.jsonl", 4), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(ln) for ln in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(rows) == N_TEST and len({r["id"] for r in rows}) == N_TEST
    for r in rows:
        assert {"id", "question", "gold", "samples"} <= r.keys()
        assert len(r["samples"]) == K
        for s in r["samples"]:
            assert {"completion", "pred", "correct", "truncated"} <= s.keys()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, tiny_data):
    """batch size -> the output of a run that was never stopped (computed once per size)."""
    from reft.cli import main

    runs = {}

    def get(batch_size: int):
        if batch_size not in runs:
            out = tmp_path_factory.mktemp("sample") / "full.jsonl"
            assert main([str(a) for a in _sample_args(tiny_model_dir, tiny_data.test, out,
                                                      batch_size)]) == 0
            runs[batch_size] = out
        return runs[batch_size]

    return get


@pytest.mark.parametrize("batch_size", [4, 6], ids=["chunk-edge", "mid-chunk"])
@pytest.mark.parametrize("tail", ["torn", "no-newline"])
def test_rerun_after_a_kill_continues_to_the_same_file(batch_size, tail, uninterrupted, tmp_path,
                                                       tiny_model_dir, tiny_data, capsys):
    """Kill after 2 of 6 questions: with --batch-size 4 (2 questions per chunk) that is a
    chunk boundary, with 6 (3 per chunk) it is mid-chunk. The third line is either torn or
    complete but without its newline; either way it is redone, not glued to."""
    full, part = uninterrupted(batch_size), tmp_path / "part.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    assert len(lines) == N_TEST
    third = lines[2][: len(lines[2]) // 2] if tail == "torn" else lines[2].rstrip("\n")
    part.write_text("".join(lines[:2]) + third)
    rc, _, err = reft_main(capsys, *_sample_args(tiny_model_dir, tiny_data.test, part, batch_size))
    assert rc == 0, err
    assert part.read_text() == full.read_text()  # same completions, same order, nothing lost


def test_garbage_in_the_middle_is_refused(tmp_path, tiny_model_dir, tiny_data, capsys):
    out = tmp_path / "s.jsonl"
    out.write_text('{"id": "synth-test-0", "samples": []}\nnot json\n{"id": "x"}\n')
    before = out.read_text()
    rc, _, err = reft_main(capsys, *_sample_args(tiny_model_dir, tiny_data.test, out, 4))
    assert rc == 2
    assert [ln for ln in err.splitlines() if ln.startswith("reft")] == [
        f"reft sample: error: {out}: line 2: not a sample record; refusing to append"]
    assert out.read_text() == before


def test_max_examples_also_caps_questions_passed_in(tmp_path, tiny_model_dir, tiny_data):
    """The pipeline passes its training questions to run_sample; --max-examples still caps
    them (the demo samples reranker data from part of a large training set)."""
    from reft.config import SampleConfig
    from reft.data import load_examples
    from reft.rollout.samples_file import run_sample

    examples = load_examples(tiny_data.test)
    cfg = SampleConfig(model=tiny_model_dir, out=str(tmp_path / "s.jsonl"), k=1,
                       max_examples=2, sampling=SamplingConfig(max_new_tokens=8))
    rows = run_sample(cfg, examples).read_text().splitlines()
    assert [json.loads(r)["id"] for r in rows] == [e.id for e in examples[:2]]
