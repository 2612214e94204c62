"""``reft ppo`` end to end (tier 3): a couple of RL steps on the tiny model, every
estimator/critic/KL variant, and training stopped cleanly by a non-finite loss."""

from __future__ import annotations

import json
import math

import pytest

from reft.config import SamplingConfig
from reft.errors import TrainingError
from tests.fixtures import (
    error_lines,
    finite,
    model_weights,
    read_metrics,
    reft_main,
    run_reft,
    tree_digest,
    weights_changed,
)

STEP_KEYS = {
    "reward/mean", "reward/accuracy", "policy/kl", "policy/approx_kl", "policy/clipfrac",
    "policy/entropy", "loss/policy", "response/length", "response/truncated_frac",
    "time/sample_s", "time/score_s", "time/forward_s", "time/advantages_s", "time/update_s",
}
VALUE_KEYS = {"loss/value", "value/explained_variance", "value/mean"}
SMALL = ["--rollout-batch-size", 2, "--mini-batch-size", 2, "--max-new-tokens", 16, "--log-every", 1,
         "--mixed-precision", "no"]


def _check_step_rows(rows: list[dict], steps: int, keys: set[str]) -> None:
    by_step = [r for r in rows if r["step"] > 0 and "reward/mean" in r]
    assert [r["step"] for r in by_step] == list(range(1, steps + 1))
    for r in by_step:
        assert keys <= r.keys(), keys - r.keys()
        for k, v in r.items():
            # explained variance is nan by definition when the returns do not vary
            assert finite(v) or (k == "value/explained_variance" and math.isnan(v)), (k, v)
        assert 0 <= r["reward/accuracy"] <= r["reward/mean"] <= 1  # scores are 1, 0.1 or 0
        # each score is 1, 0.1 or 0: the mean is accuracy + 0.1 x (the share with a wrong
        # answer), and with 2 or 4 rollouts a step both shares are multiples of 1/4
        wrong = (r["reward/mean"] - r["reward/accuracy"]) / 0.1
        for share in (wrong, r["reward/accuracy"]):
            assert 4 * share == pytest.approx(round(4 * share), abs=1e-4)
        assert 0 <= wrong <= 1 - r["reward/accuracy"] + 1e-6
        assert 0 <= r["policy/clipfrac"] <= 1 and 0 <= r["response/truncated_frac"] <= 1
        assert 1 <= r["response/length"] <= 16


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory, tiny_model_dir, tiny_data):
    """Two PPO steps with periodic eval every 2 steps and a checkpoint every step."""
    cwd = tmp_path_factory.mktemp("ppo")
    proc = run_reft("ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                    "--val-file", tiny_data.test, "--eval-examples", 2, "--eval-every", 2,
                    "--max-steps", 2, "--save-every", 1, "--lr", 1e-3, "--out", "run", *SMALL,
                    cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return cwd / "run"


@pytest.mark.slow
def test_ppo_metrics(ppo_run, tiny_model_dir, tiny_data, tmp_path, capsys):
    rows = read_metrics(ppo_run)
    _check_step_rows(rows, 2, STEP_KEYS | VALUE_KEYS)
    evals = [(r["step"], r["eval/top1"]) for r in rows if "eval/top1" in r]
    assert [s for s, _ in evals] == [0, 2]  # before training, then every --eval-every steps
    # periodic eval is greedy top-1 on the first --eval-examples test questions: what
    # ``reft eval`` gives for the model of that step (the warm-up, then the final policy)
    for (step, acc), model in zip(evals, [tiny_model_dir, ppo_run / "final"], strict=True):
        out = tmp_path / f"eval-{step}"
        rc, _, err = reft_main(capsys, "eval", "--model", model, "--test-file", tiny_data.test,
                               "--max-examples", 2, "--max-new-tokens", 16, "--out", out)
        assert rc == 0, err
        assert acc == json.loads((out / "eval.json").read_text())["top1"], step


@pytest.mark.slow
def test_ppo_checkpoints_and_final(ppo_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reft.models.value_head import PolicyWithValueHead

    for step in (1, 2):
        ckpt = ppo_run / "checkpoints" / f"step-{step}"
        assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == step
        assert (ckpt / "model" / "model.safetensors").is_file()
    final = ppo_run / "final"
    AutoModelForCausalLM.from_pretrained(final)
    AutoTokenizer.from_pretrained(final)
    assert weights_changed(model_weights(tiny_model_dir), model_weights(final))
    # the trained value head is saved with the policy, where from_pretrained finds it
    head = PolicyWithValueHead.from_pretrained(final).value_head
    fresh = PolicyWithValueHead.from_pretrained(tiny_model_dir).value_head
    assert not head.weight.equal(fresh.weight)


@pytest.mark.slow
@pytest.mark.parametrize("variant, keys", [
    (["--estimator", "grpo", "--samples-per-question", 2, "--kl-mode", "loss"],
     STEP_KEYS | {"loss/kl"}),
    (["--estimator", "rloo", "--samples-per-question", 2], STEP_KEYS),
    (["--critic", "separate"], STEP_KEYS | VALUE_KEYS),
], ids=["grpo-kl-loss", "rloo", "separate-critic"])
def test_ppo_variants(variant, keys, tmp_path, tiny_model_dir, tiny_data, capsys, monkeypatch):
    """One step of each. The random model never answers, so every reward would be 0 and a
    value-free update a no-op: a stand-in judge marks every other completion correct, which
    gives each group of 2 samples one winner."""
    import reft.rewards
    from reft.rewards import Judgement

    def judge(completions, golds, **kw):
        return [Judgement("1", True, 1.0) if i % 2 else Judgement(None, False, 0.0)
                for i in range(len(completions))]

    monkeypatch.setattr(reft.rewards, "judge", judge)
    out = tmp_path / "run"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--max-steps", 1, "--ppo-epochs", 1, "--lr", 1e-3, "--out", out, *SMALL,
                           *variant)
    assert rc == 0, err
    rows = read_metrics(out)
    _check_step_rows(rows, 1, keys)
    assert rows[-1]["reward/accuracy"] == rows[-1]["reward/mean"] == 0.5
    if "--estimator" in variant:  # value-free: no critic, no value statistics
        assert not VALUE_KEYS & rows[-1].keys()
    assert weights_changed(model_weights(tiny_model_dir), model_weights(out / "final"))
    if "separate" in variant:  # the trained critic is saved beside the policy
        from reft.models.value_head import SeparateCritic

        critic = SeparateCritic.from_pretrained(out / "final" / "critic")
        fresh = SeparateCritic.from_pretrained(tiny_model_dir)
        assert not critic.value_head.weight.equal(fresh.value_head.weight)
        assert weights_changed(model_weights(tiny_model_dir), model_weights(out / "final" / "critic"))
    else:
        assert not (out / "final" / "critic").exists()


def test_grpo_needs_several_samples(tmp_path, tiny_model_dir, tiny_data, capsys):
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--estimator", "grpo", "--samples-per-question", 1, "--out", tmp_path / "run")
    assert rc == 2
    assert error_lines(err) == ["reft ppo: error: --estimator grpo needs --samples-per-question >= 2"]
    assert not (tmp_path / "run").exists()


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir, tiny_data,
                                                             monkeypatch):
    import reft.training.ppo as ppo
    from reft.config import PPOConfig

    real, calls = ppo.policy_loss, []

    def policy_loss(*args, **kw):
        loss, stats = real(*args, **kw)
        calls.append(1)
        return (loss * math.nan if len(calls) > 1 else loss), stats  # step 1 fine, step 2 nan

    monkeypatch.setattr(ppo, "policy_loss", policy_loss)
    out = tmp_path / "run"
    cfg = PPOConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train), out=str(out),
                    rollout_batch_size=2, mini_batch_size=2, ppo_epochs=1, max_steps=3, save_every=1,
                    log_every=1, mixed_precision="no", sampling=SamplingConfig(max_new_tokens=8),
                    max_bad_steps=1)
    with pytest.raises(TrainingError) as e:
        ppo.train_ppo(cfg)
    msg = str(e.value)
    assert "\n" not in msg
    # a non-finite loss is a skipped step; --max-bad-steps 1: the first one stops the run
    assert msg.startswith("step 2: non-finite loss in the PPO update (loss=nan, loss/policy=")
    assert "; 1 bad optimizer step in a row (--max-bad-steps 1); " in msg
    assert msg.endswith(f"last good checkpoint: {out / 'checkpoints' / 'step-1'}")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-1"]
    assert not (out / "final").exists()
    ckpt = out / "checkpoints" / "step-1"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 1
    assert all(math.isfinite(v) for t in model_weights(ckpt / "model").values()
               for v in t.flatten().tolist())
    assert [r["step"] for r in read_metrics(out)] == [1]


def test_cli_maps_training_error_to_exit_1(tmp_path, tiny_model_dir, tiny_data, monkeypatch, capsys):
    import reft.training.ppo as ppo

    def diverged(cfg, *rest):
        raise TrainingError("step 7: non-finite loss/policy; last good checkpoint kept in x")

    monkeypatch.setattr(ppo, "train_ppo", diverged)
    before = tree_digest(tmp_path)
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--out", tmp_path / "run")
    assert rc == 1
    assert err.strip().splitlines() == [
        "reft ppo: training stopped: step 7: non-finite loss/policy; last good checkpoint kept in x"]
    assert tree_digest(tmp_path) == before


def test_shard_gives_every_process_the_same_number_of_questions():
    from reft.runtime.dist import shard

    assert shard([5, 6, 7], rank=0, world=1, n=4) == [5, 6, 7]  # one process: as it is
    # a short last global batch is filled cyclically: equal shapes, equal all-reduce counts
    assert [shard([5, 6, 7], r, world=2, n=2) for r in (0, 1)] == [[5, 6], [7, 5]]
    assert [shard([5], r, world=3, n=1) for r in (0, 1, 2)] == [[5], [5], [5]]
    assert [shard([1, 2, 3, 4], r, world=2, n=2) for r in (0, 1)] == [[1, 2], [3, 4]]


def test_guard_allows_nan_explained_variance_only(tmp_path):
    """Explained variance is nan when the returns do not vary (e.g. one response token):
    that must not stop training; any other non-finite metric does."""
    from reft.training.loop import check_finite
    from reft.training.ppo import GUARD_IGNORES

    ok = {"policy/kl": 0.1, "loss/policy": 0.2, "value/explained_variance": math.nan}
    check_finite(ok, 3, tmp_path, GUARD_IGNORES)
    with pytest.raises(TrainingError, match=r"^step 3: non-finite loss/value=inf; no checkpoint was"):
        check_finite({**ok, "loss/value": math.inf}, 3, tmp_path, GUARD_IGNORES)


@pytest.mark.slow
def test_value_lr_moves_the_value_head_faster_than_the_policy(tmp_path, tiny_model_dir, tiny_data,
                                                             capsys, monkeypatch):
    """``--value-lr`` gives the value head its own learning rate: one Adam step moves each
    weight by about its group's lr, so the head moves ~1e-2 and the policy ~1e-6."""
    import reft.rewards
    from reft.models.value_head import PolicyWithValueHead
    from reft.rewards import Judgement

    monkeypatch.setattr(reft.rewards, "judge", lambda completions, golds, **kw: [
        Judgement("1", True, 1.0) if i % 2 else Judgement(None, False, 0.0)
        for i in range(len(completions))])
    out = tmp_path / "run"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--max-steps", 1, "--ppo-epochs", 1, "--lr", 1e-6, "--value-lr", 1e-2,
                           "--weight-decay", 0, "--out", out, *SMALL)
    assert rc == 0, err
    before, after = model_weights(tiny_model_dir), model_weights(out / "final")
    policy_delta = max((after[k] - before[k]).abs().max().item() for k in before)
    head = PolicyWithValueHead.from_pretrained(out / "final").value_head
    fresh = PolicyWithValueHead.from_pretrained(tiny_model_dir).value_head
    head_delta = (head.weight - fresh.weight).abs().max().item()
    assert 0 < policy_delta < 1e-5 and head_delta > 1e-3
