"""``reft eval`` end to end (tier 3) on the tiny model, on real GSM8K, and for P-CoT; and
the scoring path checked with completions known to be right (tier 2)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import N_TEST, reft_main, run_reft


def _read(out):
    summary = json.loads((out / "eval.json").read_text())
    records = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    return summary, records


def test_eval_cli_top1_and_k_samples(tmp_path, tiny_model_dir, tiny_data):
    proc = run_reft("eval", "--model", tiny_model_dir, "--test-file", tiny_data.test, "--k", 3,
                    "--max-new-tokens", 16, "--out", "ev", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary, records = _read(tmp_path / "ev")
    assert summary["n"] == N_TEST and summary["k"] == 3
    for key in ("top1", "vote@k", "pass@k"):
        assert 0 <= summary[key] <= 1
    assert summary["settings"]["max_new_tokens"] == 16
    assert len(records) == N_TEST
    assert len({r["id"] for r in records}) == N_TEST
    for r in records:
        assert {"id", "gold", "completion", "pred", "correct", "truncated"} <= r.keys()
        assert isinstance(r["completion"], str) and isinstance(r["correct"], bool)
        assert len(r["samples"]) == 3
        for s in r["samples"]:
            assert {"completion", "pred", "correct"} <= s.keys()
    # the summary is the mean of the records
    assert summary["top1"] == sum(r["correct"] for r in records) / N_TEST
    assert json.loads(proc.stdout.splitlines()[0])["n"] == N_TEST


def test_eval_on_real_gsm8k(tmp_path, tiny_model_dir, shared_data, capsys):
    out = tmp_path / "ev"
    rc, _, err = reft_main(capsys, "eval", "--model", tiny_model_dir, "--test-file",
                           shared_data / "gsm8k" / "test.jsonl", "--max-examples", 20,
                           "--max-new-tokens", 16, "--out", out)
    assert rc == 0, err
    summary, records = _read(out)
    assert summary["n"] == 20 and 0 <= summary["top1"] <= 1
    assert len(records) == 20
    # GSM8K golds are read from the '#### N' line
    assert all(r["gold"] and "####" not in r["gold"] for r in records)


def _sandbox():
    try:
        import reft.sandbox  # noqa: F401
    except ImportError as e:
        pytest.skip(f"reft.sandbox is not importable yet: {e}")


def test_eval_python_cot_runs(tmp_path, tiny_model_dir, tiny_data, capsys):
    _sandbox()
    out = tmp_path / "ev"
    rc, _, err = reft_main(capsys, "eval", "--model", tiny_model_dir, "--test-file", tiny_data.test_py,
                           "--cot", "python", "--k", 2, "--max-new-tokens", 16, "--out", out)
    assert rc == 0, err
    summary, records = _read(out)
    assert summary["n"] == N_TEST and len(records) == N_TEST
    assert all(len(r["samples"]) == 2 for r in records)


@pytest.mark.parametrize("cot", ["nl", "python"])
def test_gold_completions_score_as_correct(cot, tiny_data, monkeypatch):
    """Feed ``evaluate`` the reference solutions as if the model had written them: every
    metric must be 1 (prompt -> completion -> extracted/executed answer -> gold agree)."""
    if cot == "python":
        _sandbox()
    import reft.rollout.sampler as sampler
    from reft.data import load_examples
    from reft.data.prompts import build_prompt, build_target
    from reft.eval.runner import EvalSettings, evaluate

    path = tiny_data.test if cot == "nl" else tiny_data.test_py
    examples = load_examples(str(path), cot=cot)
    target = {build_prompt(e.question, cot): build_target(e, cot) for e in examples}

    def generate(model, tokenizer, prompts, *, num_samples=1, **kw):
        texts = [target[p] for p in prompts for _ in range(num_samples)]
        return sampler.Generations([[1]] * len(texts), [[2]] * len(texts), texts, [False] * len(texts))

    monkeypatch.setattr(sampler, "generate", generate)
    summary, records = evaluate(None, None, examples, EvalSettings(cot=cot, k=2), progress=False)
    assert summary["n"] == N_TEST
    assert summary["top1"] == summary["vote@k"] == summary["pass@k"] == 1.0
    assert [r["pred"] for r in records] == [e.answer for e in examples]
