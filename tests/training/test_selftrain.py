"""Self-training baselines: the offline data filter, the online batch and loss mask, CLI smoke runs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reft.config import SamplingConfig, SelfTrainConfig
from reft.data.prompts import build_prompt, build_target, python_header
from reft.data.records import Example
from reft.training.selftrain import (
    ONLINE_LR,
    local_questions,
    nll_step,
    online_batch,
    online_lr,
    online_terms,
    select_correct,
)

Q = "Tom has 3 boxes of 12 pens. He gives away 5 pens. How many pens are left?"
GOLD_NL = "Tom has 3 * 12 = 36 pens.\nHe gives away 5, so 36 - 5 = 31 pens are left."
GOLD_PY = f'def solution():\n    """{Q}"""\n    pens = 3 * 12\n    result = pens - 5\n    return result'
ANSWER = "\nTherefore, the answer is: 31"


def _record(qid: str, *samples: tuple[str, bool]) -> dict:
    return {"id": qid, "question": Q, "gold": "31",
            "samples": [{"completion": c, "pred": None, "correct": ok, "truncated": False} for c, ok in samples]}


def _nl(qid: str = "q1") -> Example:
    return Example(qid, Q, "31", GOLD_NL)


# ---------------------------------------------------------------- offline data filter


def test_filter_keeps_correct_distinct_samples_without_the_answer_sentence():
    a = "36 pens in all.\n36 - 5 = 31." + ANSWER
    b = "12 * 3 = 36, minus 5 is 31." + ANSWER
    rec = _record("q1", (a, True), ("wrong" + ANSWER.replace("31", "30"), False), (b, True))
    kept = select_correct([rec], [_nl()], "nl", max_per_question=4)
    assert [e.cot for e in kept] == ["36 pens in all.\n36 - 5 = 31.", "12 * 3 = 36, minus 5 is 31."]
    assert [e.id for e in kept] == ["q1#s0", "q1#s1"]
    assert all(e.question == Q and e.answer == "31" for e in kept)
    # the target adds the answer sentence back exactly once
    assert build_target(kept[0]) == "36 pens in all.\n36 - 5 = 31." + ANSWER


def test_filter_drops_duplicates_whitespace_variants_and_the_gold_cot():
    a = "36 pens.\n36 - 5 = 31." + ANSWER
    rec = _record("q1",
                  (a, True),
                  (a, True),                                       # identical
                  ("36  pens.\n\n36 - 5 =   31. " + ANSWER, True),  # whitespace only
                  (GOLD_NL + ANSWER, True),                        # the annotated CoT
                  ("  " + GOLD_NL.replace("\n", " ") + "\n" + ANSWER, True))  # gold, re-spaced
    kept = select_correct([rec], [_nl()], "nl", max_per_question=10)
    assert [e.cot for e in kept] == ["36 pens.\n36 - 5 = 31."]


def test_filter_caps_samples_per_question_and_ignores_unknown_ids():
    recs = [_record("q1", *[(f"step {i}." + ANSWER, True) for i in range(5)]),
            _record("q2", ("x." + ANSWER, True), ("y." + ANSWER, True)),
            _record("other", ("z." + ANSWER, True))]
    kept = select_correct(recs, [_nl("q1"), _nl("q2")], "nl", max_per_question=2)
    assert [e.id for e in kept] == ["q1#s0", "q1#s1", "q2#s0", "q2#s1"]
    assert [e.cot for e in kept][:2] == ["step 0.", "step 1."]
    # duplicates and wrong samples do not use up the cap
    rec = _record("q1", ("a." + ANSWER, False), ("b." + ANSWER, True), ("b." + ANSWER, True), ("c." + ANSWER, True))
    assert [e.cot for e in select_correct([rec], [_nl()], "nl", max_per_question=2)] == ["b.", "c."]


def test_filter_cuts_at_the_graded_answer_trigger():
    # reft.answers grades after the last "the answer is", in any case, and reads one line
    rec = _record("q1", ("36 - 5 = 31.\nThe answer is: 31", True),
                  ("12 * 3 = 36, 36 - 5 = 31. Therefore, the answer is: 31\nand then some", True),
                  ("the answer is not 30.\nSo 31 it is. therefore the answer is 31.", True))
    kept = select_correct([rec], [_nl()], "nl", max_per_question=4)
    assert [e.cot for e in kept] == ["36 - 5 = 31.", "12 * 3 = 36, 36 - 5 = 31.",
                                     "the answer is not 30.\nSo 31 it is."]


def test_filter_drops_a_correct_sample_with_no_reasoning():
    rec = _record("q1", (ANSWER.strip(), True), ("36 - 5 = 31." + ANSWER, True))
    assert [e.cot for e in select_correct([rec], [_nl()], "nl", max_per_question=4)] == ["36 - 5 = 31."]


def test_filter_rebuilds_python_programs_and_compares_bodies():
    gold = Example("q1", Q, "31", GOLD_PY)
    same_as_gold = "    pens = 3 * 12\n    result = pens - 5\n    return result"
    other = "    result = 3 * 12 - 5\n    return result"
    rec = _record("q1", (same_as_gold, True), (other, True), (other + "\n", True))
    (kept,) = select_correct([rec], [gold], "python", max_per_question=4)
    assert kept.cot == python_header(Q) + other  # a runnable program, as Example.cot stores it
    assert build_target(kept, "python") == other  # SFT trains on the body only


def test_online_batch_is_every_correct_sample_plus_gold():
    a = "36 - 5 = 31." + ANSWER
    recs = [_record("q1", (a, True), (a, True), ("no" + ANSWER, False)),
            _record("q2", (GOLD_NL + ANSWER, True))]
    batch = [_nl("q1"), _nl("q2")]
    with_gold = online_batch(recs, batch, SelfTrainConfig(samples_per_question=3, include_gold=True))
    # on-policy: duplicates and a sample equal to the gold CoT all count, as sampled
    assert [e.cot for e in with_gold.samples] == ["36 - 5 = 31.", "36 - 5 = 31.", GOLD_NL]
    assert [e.id for e in with_gold.gold] == ["q1", "q2"]
    without = online_batch(recs, batch, SelfTrainConfig(samples_per_question=3, include_gold=False))
    assert without.samples == with_gold.samples and without.gold == []


def test_online_terms_are_the_releases_halves():
    b = online_batch([], [_nl("q1")], SelfTrainConfig())
    assert online_terms(b, SelfTrainConfig()) == [([], 0.5), ([_nl("q1")], 0.5)]
    assert online_terms(b._replace(gold=[]), SelfTrainConfig(include_gold=False)) == [([], 1.0)]


def test_a_short_last_batch_is_topped_up_only_in_lock_step():
    gb = [7, 3, 5]  # a last global batch of 3 questions for 2 processes x 2
    assert local_questions(gb, 0, 2, 2, fill=False) == ([7, 3], 2)
    assert local_questions(gb, 1, 2, 2, fill=False) == ([5], 1)
    assert local_questions(gb, 1, 2, 2, fill=True) == ([5, 7], 1)
    assert local_questions([4], 1, 2, 2, fill=True) == ([4, 4], 0)
    assert local_questions([4], 1, 2, 2, fill=False) == ([], 0)


def test_online_lr_is_the_releases_for_real_models():
    from tests.tiny import tiny_model_and_tokenizer

    model, _ = tiny_model_and_tokenizer()  # a Llama without reft's tiny-model mark: "real"
    assert ONLINE_LR == 3e-7
    assert online_lr(SelfTrainConfig(), model) == 3e-7
    assert online_lr(SelfTrainConfig(lr=1e-4), model) == 1e-4
    model.config.reft_tiny = True
    assert online_lr(SelfTrainConfig(), model) == SelfTrainConfig().tiny_lr


# ---------------------------------------------------------------- online loss mask


class _Recorder(torch.optim.Optimizer):
    """Keeps the gradients it is asked to step with, and changes nothing."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append([p.grad.clone() for g in self.param_groups for p in g["params"]])


def _hand_nll(model, tok, examples: list[Example]) -> torch.Tensor:
    """Token-mean NLL over the CoT tokens (target + eos) of ``examples``, one sequence at a
    time: what the release's ``model(input_ids, labels=labels)[0]`` is for one batch."""
    total, count = 0.0, 0
    for e in examples:
        p = tok(build_prompt(e.question))["input_ids"]
        t = tok(build_target(e), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([p + t])
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
        # position j predicts token j+1; the CoT tokens are positions len(p) .. end
        total = total - sum(logp[j - 1, ids[0, j]] for j in range(len(p), ids.shape[1]))
        count += len(t)
    return total / count


def _check_step(model, tok, terms, cfg, expected: torch.Tensor) -> None:
    """``nll_step`` on ``terms`` steps with the gradient of ``expected`` and returns its value."""
    from accelerate import Accelerator

    expected.backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    opt = _Recorder(model.parameters())
    loss = nll_step(model, opt, tok, terms, cfg, Accelerator(cpu=True))
    assert loss == pytest.approx(expected.item(), rel=1e-5)
    (got,) = opt.grads
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("include_gold", "batch_size"), [(False, 8), (True, 1), (True, 8)])
def test_online_loss_is_half_the_samples_nll_plus_half_the_golds(include_gold, batch_size):
    """The release's step: 1/2 token-mean NLL of the correct samples + 1/2 token-mean NLL of
    the gold CoTs, each over its own tokens (not one mean over their union)."""
    from tests.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    recs = [_record("q1", ("36 - 5 = 31." + ANSWER, True),
                    ("a wrong one" + ANSWER.replace("31", "7"), False)),
            _record("q2", ("nothing right" + ANSWER.replace("31", "2"), False))]
    batch = [_nl("q1"), _nl("q2")]
    cfg = SelfTrainConfig(samples_per_question=2, include_gold=include_gold, batch_size=batch_size,
                          max_grad_norm=1e9)
    train = online_batch(recs, batch, cfg)
    kept = [Example("q1", Q, "31", "36 - 5 = 31.")]
    assert [e.cot for e in train.samples] == [e.cot for e in kept]
    if include_gold:
        expected = 0.5 * _hand_nll(model, tok, kept) + 0.5 * _hand_nll(model, tok, batch)
        # the two terms have different token counts: a mean over their union differs
        union = _hand_nll(model, tok, kept + batch)
        assert abs(union.item() - expected.item()) > 1e-3
    else:
        expected = _hand_nll(model, tok, kept)
    _check_step(model, tok, online_terms(train, cfg), cfg, expected)


def test_online_loss_without_correct_samples_is_half_the_golds():
    """As the release: with no correct sample the gold term keeps its weight 1/2."""
    from tests.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    batch = [_nl("q1"), _nl("q2")]
    cfg = SelfTrainConfig(max_grad_norm=1e9)
    train = online_batch([_record("q1", ("no" + ANSWER.replace("31", "2"), False))], batch, cfg)
    assert train.samples == []
    _check_step(model, tok, online_terms(train, cfg), cfg, 0.5 * _hand_nll(model, tok, batch))


def test_online_step_without_anything_to_learn_does_nothing():
    from accelerate import Accelerator

    from tests.tiny import tiny_model_and_tokenizer

    model, tok = tiny_model_and_tokenizer()
    opt = _Recorder(model.parameters())
    cfg = SelfTrainConfig(include_gold=False)
    terms = online_terms(online_batch([], [_nl()], cfg), cfg)
    assert math.isnan(nll_step(model, opt, tok, terms, cfg, Accelerator(cpu=True)))
    assert opt.grads == []


def test_online_run_samples_in_lock_step_with_sharded_params(monkeypatch, tmp_path, tiny_model_dir,
                                                             tiny_data):
    """With sharded parameters (FSDP) sampling gets an all_done function (lock-step forward
    passes), as PPO's does under ZeRO-3; without, none. Each sampled batch is trained on
    --updates-per-batch times."""
    import reft.rollout.sample as sample_mod
    import reft.runtime.dist as dist
    import reft.training.selftrain as selftrain
    from reft.training.selftrain import run_selftrain

    real_sample, real_step = sample_mod.sample_records, selftrain.nll_step
    seen: list = []
    steps: list[float] = []

    def sample_records(model, tok, examples, cfg, k, seeds=None, all_done=None):
        seen.append((len(examples), all_done))
        return real_sample(model, tok, examples, cfg, k, seeds, all_done=all_done)

    def nll_step(lm, *args):
        # the update trains in training mode (the model's own dropout), as SFT does and the
        # release's train_rl_sl.py (model.train() after its rollout); sampling is in eval mode
        assert lm.training and all(m.training for m in lm.modules())
        steps.append(real_step(lm, *args))
        return steps[-1]

    monkeypatch.setattr(sample_mod, "sample_records", sample_records)
    monkeypatch.setattr(selftrain, "nll_step", nll_step)
    for sharded in (False, True):
        monkeypatch.setattr(selftrain, "shards_params", lambda acc, s=sharded: s)
        monkeypatch.setattr(dist, "shards_params", lambda acc, s=sharded: s)
        seen.clear()
        steps.clear()
        # 8 questions, 3 per step: the third (last) batch holds 2, topped up in lock-step
        run_selftrain(SelfTrainConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train),
                                      out=str(tmp_path / f"run{sharded}"), mode="online",
                                      rollout_batch_size=3, epochs=1, sampling=SamplingConfig(max_new_tokens=4)))
        assert [n for n, _ in seen] == ([3, 3, 3] if sharded else [3, 3, 2])
        assert all(callable(f) if sharded else f is None for _, f in seen)
        assert len(steps) == 3 * 2 and all(math.isfinite(x) for x in steps)


# ---------------------------------------------------------------- the release's settings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("ci_"))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_hold_the_releases_self_training_numbers(path):
    """exps/paper_exps/Sampling + OffSL: 100 samples per question, at most 10 kept, 20 epochs
    at 1e-5; OnSL: lr 3e-7, one sample per question, two updates on each batch."""
    from reft.pipeline.spec import load_pipeline

    p = load_pipeline(path)
    off, on = p.configs["offline_st"], p.configs["online_st"]
    assert (off.mode, off.k, off.max_per_question, off.epochs, off.lr) == (
        "offline", 100, 10, 20, 1e-5)
    assert (on.mode, on.lr, on.samples_per_question, on.updates_per_batch, on.include_gold) == (
        "online", 3e-7, 1, 2, True)
    assert on.rollout_batch_size * on.samples_per_question == 32  # 4 per GPU x 8 GPUs


def test_help_says_what_the_release_does(capsys):
    from tests.fixtures import reft_main

    rc, out, _ = reft_main(capsys, "selftrain", "--help")
    text = " ".join(out.split())
    assert rc == 0
    assert "--updates-per-batch" in text and "(the release: 2, its ppo_epochs)" in text
    assert "samples 100 per question from the warm-up model and keeps at most 10" in text
    assert "fine-tunes the base model (CodeLlama/Galactica), not the warm-up" in text
    assert "--eos-token-id" in text and "--pad-token-id" in text


# ---------------------------------------------------------------- CLI smoke runs


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """A tiny reft-built model and 6 synthetic training problems."""
    from reft.data.synthetic import generate, write_reft_json
    from reft.models.tiny import init_model

    root = tmp_path_factory.mktemp("selftrain")
    texts = [build_prompt(e.question) + build_target(e) for e in generate(40, seed=1)]
    init_model(root / "model", texts=texts, vocab_size=300, hidden_size=32, layers=2, heads=2)
    write_reft_json(generate(6, seed=0), root / "train.json")
    return root


def _reft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reft", *args], capture_output=True, text=True, timeout=600)


def _changed(a: Path, b: Path) -> bool:
    from reft.models.loading import load_model

    before, after = load_model(a).state_dict(), load_model(b).state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before)


def _finite_losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/nll"] for r in rows]
    assert losses and all(math.isfinite(x) for x in losses)
    return losses


@pytest.mark.slow
def test_cli_offline_selftrain(task, tmp_path):
    from reft.data import load_examples

    out = tmp_path / "offline"
    out.mkdir()
    # the first two questions are "already sampled" (the samples file is resumable) with
    # hand-made correct samples, so the filter has something to add; the rest are sampled
    examples = load_examples(str(task / "train.json"))
    with (out / "samples.jsonl").open("w") as f:
        for e in examples[:2]:
            rec = _record(e.id, ("my own steps." + ANSWER, True), ("my own steps." + ANSWER, True),
                          (e.cot + ANSWER, True))
            f.write(json.dumps({**rec, "question": e.question, "gold": e.answer}) + "\n")
    done = _reft("selftrain", "--mode", "offline", "--model", str(task / "model"),
                 "--train-file", str(task / "train.json"), "--out", str(out), "--k", "2", "--epochs", "1",
                 "--batch-size", "4", "--log-every", "1", "--max-new-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert "2 correct distinct samples added to 6 examples" in done.stdout
    records = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(e.id for e in examples)
    assert all(len(r["samples"]) in (2, 3) for r in records)
    assert "mode: offline" in (out / "config.yaml").read_text()
    assert len(_finite_losses(out)) == 2  # (6 + 2) examples / batch 4
    assert _changed(task / "model", out / "final")


@pytest.mark.slow
def test_cli_online_selftrain(task, tmp_path):
    out = tmp_path / "online"
    done = _reft("selftrain", "--mode", "online", "--model", str(task / "model"),
                 "--train-file", str(task / "train.json"), "--out", str(out), "--max-steps", "2",
                 "--rollout-batch-size", "2", "--samples-per-question", "2", "--max-new-tokens", "24")
    assert done.returncode == 0, done.stderr
    assert len(_finite_losses(out)) == 2  # the gold CoTs are always there to learn from
    assert (out / "checkpoints" / "step-2" / "trainer_state.json").is_file()
    assert _changed(task / "model", out / "final")


def test_cli_online_selftrain_refuses_a_max_length_with_no_room_for_the_cot(task, tmp_path):
    """Every prompt fills --max-length: each step would learn nothing (a NaN loss every step);
    a one-line error instead, exit 2, and no run directory."""
    out = tmp_path / "online"
    done = _reft("selftrain", "--mode", "online", "--model", str(task / "model"),
                 "--train-file", str(task / "train.json"), "--out", str(out), "--max-steps", "1",
                 "--max-length", "16")
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--max-length 16: no room for the chain of thought" in lines[0]
    assert not out.exists()
