"""``reft eval`` end to end (tier 3) on the tiny model, on real GSM8K, and for P-CoT; and
the scoring path checked with completions known to be right (tier 2)."""

from __future__ import annotations

import json

import pytest

from tests.fixtures import N_TEST, hand_vote, metrics_from_predictions, reft_main, run_reft


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
    # every metric is what the written predictions give by hand
    expected = metrics_from_predictions(records, k=3)
    assert {k: summary[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert [r["vote"] for r in records] == [hand_vote([s["pred"] for s in r["samples"]])
                                            for r in records]
    assert summary["settings"]["sampling"]["max_new_tokens"] == 16
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
    assert summary["n"] == 20 and len(records) == 20
    assert summary["top1"] == sum(r["correct"] for r in records) / 20
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
    from reft.config import EvalConfig
    from reft.data import load_examples
    from reft.data.prompts import build_prompt, build_target
    from reft.eval.runner import evaluate

    path = tiny_data.test if cot == "nl" else tiny_data.test_py
    examples = load_examples(str(path), cot=cot)
    target = {build_prompt(e.question, cot): build_target(e, cot) for e in examples}

    def generate(model, tokenizer, prompts, *, num_samples=1, **kw):
        texts = [target[p] for p in prompts for _ in range(num_samples)]
        return sampler.Generations([[1]] * len(texts), [[2]] * len(texts), texts, [False] * len(texts))

    monkeypatch.setattr(sampler, "generate", generate)
    summary, records = evaluate(None, None, examples, EvalConfig(cot=cot), 2, progress=False)
    assert summary["n"] == N_TEST
    assert summary["top1"] == summary["vote@k"] == summary["pass@k"] == 1.0
    assert [r["pred"] for r in records] == [e.answer for e in examples]


def test_eval_cli_metrics_on_controlled_completions(tmp_path, tiny_model_dir, tiny_data, capsys,
                                                    monkeypatch):
    """``reft eval --k 3 --rerank`` with the completions and reranker scores fixed per
    question, so every metric in eval.json is known by hand. R = right answer, W / W2 = two
    different wrong answers, N = no answer; the reranker scores the samples 0, 2, 1, and
    rerank@k takes the best-scored sample that gave an answer (the release's rule)."""
    import reft.eval.runner as runner
    import reft.rollout.sampler as sampler
    from reft.data import load_examples
    from reft.data.prompts import ANSWER_TRIGGER, build_prompt

    examples = load_examples(str(tiny_data.test))
    assert len(examples) == 6
    plan = [  # greedy, samples          top1  vote           pass@3  rerank (2nd, else 3rd, else 1st)
        ("R", ["R", "R", "W"]),   # q0    1     R (2 of 3)     1       1 (2nd)
        ("W", ["W", "W", "R"]),   # q1    0     W (2 of 3)     1       0 (2nd)
        ("W", ["N", "N", "R"]),   # q2    0     R (only one)   1       1 (3rd: the 2nd has no answer)
        ("N", ["W", "N", "N"]),   # q3    0     W              0       0 (1st)
        ("W", ["N", "N", "N"]),   # q4    0     none           0       0 (no answer at all)
        ("R", ["R", "W", "W2"]),  # q5    1     R (tie: first) 1       0 (2nd)
    ]

    def text(e, kind):
        if kind == "N":
            return "I do not know."
        value = {"R": float(e.answer), "W": float(e.answer) + 1000, "W2": float(e.answer) + 2000}
        return f"So it is that.\n{ANSWER_TRIGGER} {value[kind]:g}"

    by_prompt = {build_prompt(e.question): (e, p) for e, p in zip(examples, plan, strict=True)}

    def generate(model, tokenizer, prompts, *, num_samples=1, greedy=False, **kw):
        texts = [text(e, g) if greedy else text(e, s[j])
                 for e, (g, s) in map(by_prompt.get, prompts) for j in range(num_samples)]
        return sampler.Generations([[1]] * len(texts), [[2]] * len(texts), texts,
                                   [False] * len(texts))

    def load_reranker(path):
        return lambda prompts, completions: [(0.0, 2.0, 1.0)[i % 3] for i in range(len(completions))]

    monkeypatch.setattr(sampler, "generate", generate)
    monkeypatch.setattr(runner, "load_reranker", load_reranker)
    out = tmp_path / "ev"
    rc, _, err = reft_main(capsys, "eval", "--model", tiny_model_dir, "--test-file", tiny_data.test,
                           "--k", 3, "--rerank", tmp_path / "rr", "--out", out)
    assert rc == 0, err
    summary, records = _read(out)
    assert (summary["n"], summary["k"]) == (6, 3)
    assert summary["top1"] == pytest.approx(2 / 6)
    assert summary["vote@k"] == pytest.approx(3 / 6)
    assert summary["pass@k"] == pytest.approx(4 / 6)
    assert summary["rerank@k"] == pytest.approx(2 / 6)
    assert [r["rerank_correct"] for r in records] == [True, False, True, False, False, False]
    assert [r["correct"] for r in records] == [g == "R" for g, _ in plan]
    assert [[s["correct"] for s in r["samples"]] for r in records] == [
        [x == "R" for x in s] for _, s in plan]
    expected = metrics_from_predictions(records, k=3)
    assert {k: summary[k] for k in expected} == pytest.approx(expected, abs=1e-12)
