"""Reward-model reranking: rerank@k selection, the classifier's training and scoring, CLI smoke runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reft.config import RerankerConfig
from reft.data.prompts import build_prompt, build_target
from reft.data.records import Example
from reft.errors import UserError
from reft.models.reranker import Reranker, encode_scored, load_classifier
from reft.training.reranker import labelled_texts, read_samples, train_reranker
from tests.fixtures import metrics_from_predictions

Q = "Tom has 3 boxes of 12 pens. He gives away 5 pens. How many pens are left?"
RIGHT = "3 * 12 = 36 pens.\n36 - 5 = 31 pens are left.\nTherefore, the answer is: 31"
WRONG = "3 + 12 = 15 pens.\n15 + 5 = 20 pens.\nTherefore, the answer is: 20"


# ---------------------------------------------------------------- rerank@k selection


def test_rerank_at_k_takes_the_highest_scored_sample(monkeypatch):
    from reft.config import EvalConfig
    from reft.eval.runner import evaluate
    from reft.rollout import sampler
    from tests.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    golds = ["7", "5", "1", "8"]
    examples = [Example(f"q{i}", f"Ann has {i} pens. How many?", g) for i, g in enumerate(golds)]
    answers = [["5", "7", "7"], ["3", "4", "5"], ["1", "2", "2"], ["9", "8", "9"]]
    scores = [[0.9, 0.1, 0.2],        # picks "5": wrong (the vote, "7", is right)
              [0.1, 0.3, 0.8],        # picks "5": right
              [0.5, 0.5, 0.1],        # a tie goes to the first, "1": right
              [math.nan, 0.2, 0.1]]   # NaN never wins, so "8": right
    sampled = [f"Some steps.\nTherefore, the answer is: {a}" for row in answers for a in row]

    def fake_generate(model, tokenizer, prompts, *, greedy=False, num_samples=1, **_):
        texts = ["no answer"] * len(prompts) if greedy else sampled
        assert len(texts) == len(prompts) * num_samples
        return sampler.Generations([[1]] * len(texts), [[2]] * len(texts), texts, [False] * len(texts))

    calls = []

    def rerank_fn(prompts: list[str], completions: list[str]) -> list[float]:
        calls.append((prompts, completions))
        return [s for row in scores for s in row]

    monkeypatch.setattr(sampler, "generate", fake_generate)
    summary, records = evaluate(model, tok, examples, EvalConfig(), 3, rerank_fn, progress=False)
    # the scorer sees each question's prompt once per sample, aligned with the samples
    assert calls == [([build_prompt(e.question) for e in examples for _ in range(3)], sampled)]
    assert [r["rerank_correct"] for r in records] == [False, True, True, True]
    assert records[0]["rerank_scores"] == [0.9, 0.1, 0.2]
    assert summary["rerank@k"] == 0.75
    assert summary["vote@k"] == 0.25  # only question 0's majority is right
    assert summary["pass@k"] == 1.0 and summary["top1"] == 0.0


# ---------------------------------------------------------------- inputs


def test_encode_scored_appends_eos_and_keeps_the_end_when_too_long():
    from tests.tiny import tiny_model_and_tokenizer

    _, tok = tiny_model_and_tokenizer()
    prompt = build_prompt(Q)
    (full,) = encode_scored([prompt], [RIGHT], tok, max_length=512)
    p, c = tok(prompt)["input_ids"], tok(RIGHT, add_special_tokens=False)["input_ids"]
    assert full == p + c + [tok.eos_token_id]
    (cut,) = encode_scored([prompt], [RIGHT], tok, max_length=10)
    assert cut == full[-10:]


def _write_samples(path: Path, n_questions: int = 4) -> Path:
    """n questions, each with 2 correct and 2 incorrect samples (half positive)."""
    rows = [{"id": f"q{i}", "question": Q, "gold": "31",
             "samples": [{"completion": t, "pred": p, "correct": ok, "truncated": False}
                         for t, p, ok in [(RIGHT, "31", True), (WRONG, "20", False),
                                          (WRONG.replace("20", "21"), "21", False), (RIGHT + " ", "31", True)]]}
            for i in range(n_questions)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("pad_is_eos", [False, True])
def test_scores_do_not_depend_on_batching_or_padding(pad_is_eos):
    """Many causal LMs pad with eos; the classifier then reads the last completion token."""
    import copy

    from transformers import LlamaForSequenceClassification

    from tests.tiny import tiny_model_and_tokenizer

    lm, tok = tiny_model_and_tokenizer()
    tok = copy.deepcopy(tok)  # the tiny tokenizer is shared between tests
    if pad_is_eos:
        tok.pad_token = tok.eos_token
    config = copy.deepcopy(lm.config)
    config.num_labels, config.pad_token_id = 1, tok.pad_token_id
    torch.manual_seed(0)
    reranker = Reranker(LlamaForSequenceClassification(config).eval(), tok, batch_size=8)
    prompts, completions = [build_prompt(Q), build_prompt("A?"), build_prompt(Q)], [RIGHT, "x", WRONG]
    batched = reranker.score(prompts, completions)
    alone = [reranker.score([p], [c])[0] for p, c in zip(prompts, completions, strict=True)]
    assert batched == pytest.approx(alone, abs=1e-6)
    assert len(set(batched)) == 3


def test_read_samples_checks_its_input(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_samples(tmp_path / "missing.jsonl")
    f = _write_samples(tmp_path / "s.jsonl", 2)
    with f.open("a") as out:
        out.write('{"id": "q9", "quest')  # torn by an interrupted 'reft sample'
    assert [r["id"] for r in read_samples(f)] == ["q0", "q1"]
    f.write_text('{"id": 1}\n' + f.read_text())
    with pytest.raises(UserError, match="line 1"):
        read_samples(f)


# ---------------------------------------------------------------- the classifier


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from reft.data.synthetic import generate
    from reft.models.tiny import init_model

    out = tmp_path_factory.mktemp("reranker") / "model"
    texts = [build_prompt(e.question) + build_target(e) for e in generate(40, seed=1)] + [Q, RIGHT, WRONG]
    return init_model(out, texts=texts, vocab_size=300, hidden_size=32, layers=2, heads=2)


def test_reranker_trains_and_scores_probabilities_in_order(tiny_dir, tmp_path):
    from reft.models.loading import load_model

    out = tmp_path / "rr"
    cfg = RerankerConfig(model=str(tiny_dir), samples=str(_write_samples(tmp_path / "s.jsonl")),
                         out=str(out), epochs=3, batch_size=8, log_every=1)
    final = train_reranker(cfg)
    assert final == out / "final"
    assert (out / "config.yaml").is_file() and any((out / "tb").iterdir())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6  # 16 samples / 8 per step * 3 epochs
    assert all(math.isfinite(r["loss/bce"]) and 0 <= r["train/accuracy"] <= 1 for r in rows)
    assert all(r["data/positive_frac"] == 0.5 for r in rows)  # 8 of 16 samples are correct

    reranker = Reranker.load(out)  # the run directory stands for its final/
    # the loss over all the samples went down: compare with the classifier training started
    # from (same seed, so the same new score head)
    torch.manual_seed(cfg.seed)
    start = Reranker(load_classifier(tiny_dir).eval(), reranker.tokenizer)
    prompts, completions, labels = labelled_texts(read_samples(cfg.samples))

    def bce(r: Reranker) -> float:
        probs = torch.tensor(r.score(prompts, completions))
        return torch.nn.functional.binary_cross_entropy(probs, torch.tensor(labels)).item()

    assert bce(reranker) < bce(start)
    before = load_model(tiny_dir).model.embed_tokens.weight
    assert not torch.equal(before, reranker.model.model.embed_tokens.weight)
    prompts = [build_prompt(Q), build_prompt("A?"), build_prompt(Q)]
    completions = [RIGHT, "x", WRONG]
    probs = reranker.score(prompts, completions)
    assert len(probs) == 3 and all(0.0 <= p <= 1.0 for p in probs)
    # order kept although batches are sorted by length, and padding changes nothing
    alone = [reranker.score([p], [c])[0] for p, c in zip(prompts, completions, strict=True)]
    assert probs == pytest.approx(alone, abs=1e-5)
    assert reranker.score(prompts[::-1], completions[::-1]) == pytest.approx(probs[::-1], abs=1e-5)
    assert not reranker.model.training


def test_reranker_load_refuses_a_language_model(tiny_dir):
    with pytest.raises(UserError, match="not a reranker"):
        Reranker.load(tiny_dir)


def test_cli_missing_samples_is_one_line(tiny_dir, tmp_path, capsys):
    from reft.cli import main

    rc = main(["reranker", "train", "--model", str(tiny_dir), "--samples", str(tmp_path / "none.jsonl"),
               "--out", str(tmp_path / "rr")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "none.jsonl: no such file" in err
    assert not (tmp_path / "rr").exists()


# ---------------------------------------------------------------- CLI smoke run


@pytest.mark.slow
def test_cli_reranker_train_then_eval_rerank(tiny_dir, tmp_path):
    from reft.data.synthetic import generate, write_reft_json

    def reft(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "reft", *args], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        return done

    samples = _write_samples(tmp_path / "samples.jsonl")
    reft("reranker", "train", "--model", str(tiny_dir), "--samples", str(samples),
         "--out", str(tmp_path / "rr"), "--epochs", "1", "--batch-size", "8")
    assert (tmp_path / "rr" / "final" / "model.safetensors").is_file()
    test = write_reft_json(generate(3, split="test"), tmp_path / "test.json")
    reft("eval", "--model", str(tiny_dir), "--test-file", str(test), "--k", "2",
         "--rerank", str(tmp_path / "rr"), "--max-new-tokens", "16", "--out", str(tmp_path / "ev"))
    summary = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert summary["k"] == 2
    records = [json.loads(ln) for ln in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    for rec in records:
        assert len(rec["rerank_scores"]) == 2 and all(0 <= s <= 1 for s in rec["rerank_scores"])
    # rerank@k is the correctness of each question's highest-scored sample, averaged
    expected = metrics_from_predictions(records, k=2)
    assert expected.keys() == {"top1", "vote@k", "pass@k", "rerank@k"}
    assert {m: summary[m] for m in expected} == pytest.approx(expected, abs=1e-12)
