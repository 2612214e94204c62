"""2 processes (gloo on CPU) against 1 process with the same global batch (tier 3).

SFT and PPO (full and LoRA) reach the same weights; eval and sample write the same
records; every run directory holds each checkpoint, metrics row and model once. The
2-process runs share two ``accelerate launch`` calls (one ``-m reft sft``, one for the
rest) so the processes start only twice; the 1-process runs go in this process.
"""

from __future__ import annotations

import json

import pytest

from tests.distributed.multiproc import launch, launch_commands
from tests.fixtures import model_weights, read_metrics, weights_changed

N_EVAL = 5  # odd: the 2 processes get 3 and 2 questions (+1 repeated, dropped when gathered)
SFT = ["sft", "--epochs", 2, "--lr", 3e-3, "--log-every", 1, "--mixed-precision", "no"]
PPO = ["ppo", "--max-steps", 2, "--ppo-epochs", 2, "--max-new-tokens", 12, "--lr", 1e-3,
       "--log-every", 1, "--save-every", 1, "--mixed-precision", "no"]
EVAL = ["eval", "--k", 3, "--max-new-tokens", 12, "--max-examples", N_EVAL, "--gen-batch-size", 4]
SAMPLE = ["sample", "--k", 2, "--max-new-tokens", 12, "--max-examples", N_EVAL, "--gen-batch-size", 4]
ONLINE = ["selftrain", "--mode", "online", "--max-steps", 2, "--samples-per-question", 2,
          "--max-new-tokens", 12, "--lr", 1e-3, "--log-every", 1, "--mixed-precision", "no"]


def _commands(model, data, out, world: int) -> dict[str, list]:
    """Per-process batch sizes for ``world`` processes: the global batches are the same."""
    per = 4 // world
    train = ["--model", model, "--train-file", data.train]
    return {
        "sft": [*SFT, *train, "--batch-size", per, "--out", out / "sft"],
        "ppo": [*PPO, *train, "--rollout-batch-size", per, "--mini-batch-size", per,
                "--out", out / "ppo"],
        # one row per micro-batch: gradients accumulated locally (no_sync), all-reduced once
        "ppo_micro": [*PPO, *train, "--rollout-batch-size", per, "--mini-batch-size", per,
                      "--micro-batch-tokens", 1, "--out", out / "ppo_micro"],
        "ppo_lora": [*PPO, *train, "--rollout-batch-size", per, "--mini-batch-size", per,
                     "--lora-r", 4, "--lr", 1e-2, "--out", out / "ppo_lora"],
        "online": [*ONLINE, *train, "--rollout-batch-size", per, "--out", out / "online"],
        "eval": [*EVAL, "--model", model, "--test-file", data.test, "--out", out / "eval"],
        "sample": [*SAMPLE, "--model", model, "--data-file", data.test, "--out", out / "s.jsonl"],
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_data):
    """(1-process run root, 2-process run root)."""
    from reft.cli import main

    one, two = (tmp_path_factory.mktemp(name) for name in ("one", "two"))
    for argv in _commands(tiny_model_dir, tiny_data, one, world=1).values():
        assert main([str(a) for a in argv]) == 0, argv
    cmds = _commands(tiny_model_dir, tiny_data, two, world=2)
    proc = launch("-m", "reft", *cmds.pop("sft"), cwd=two)  # `python -m reft` under the launcher
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("SFT finished") == 1  # printed by the main process only
    proc = launch_commands(list(cmds.values()), cwd=two)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return one, two


def _assert_close(a: dict, b: dict, atol: float = 1e-5) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=atol), (k, (a[k] - b[k]).abs().max())


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "perf/tokens_per_s"}
            for r in rows]


@pytest.mark.slow
def test_sft_two_processes_reach_the_weights_of_one(runs, tiny_model_dir):
    one, two = runs
    final = model_weights(two / "sft" / "final")
    assert weights_changed(model_weights(tiny_model_dir), final)
    _assert_close(model_weights(one / "sft" / "final"), final)
    # the same losses and learning rates step by step (the schedule counts global steps)
    rows1, rows2 = (_without_timing(read_metrics(d / "sft")) for d in (one, two))
    assert [r["step"] for r in rows2] == [1, 2, 3, 4]
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r2 == pytest.approx(r1, rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("run", ["ppo", "ppo_micro", "ppo_lora"])
def test_ppo_two_processes_reach_the_weights_of_one(run, runs, tiny_model_dir):
    """Each process samples its questions with per-question seeds, whitens globally and
    weights its losses by its share of the global mini-batch's responses (the default
    per-response aggregation) or tokens."""
    from safetensors.torch import load_file

    one, two = runs
    final = model_weights(two / run / "final")
    assert weights_changed(model_weights(tiny_model_dir), final)
    _assert_close(model_weights(one / run / "final"), final)
    _assert_close(*(load_file(str(d / run / "final" / "value_head.safetensors")) for d in (one, two)))
    rows1, rows2 = (read_metrics(d / run) for d in (one, two))
    # responses of different lengths: the processes hold different numbers of tokens
    assert any(r["response/truncated_frac"] < 1 for r in rows1)
    for r1, r2 in zip(rows1, rows2, strict=True):
        for key in ("reward/mean", "response/length", "policy/kl"):  # per-sequence means
            assert r2[key] == pytest.approx(r1[key], rel=1e-3, abs=1e-6), key


@pytest.mark.slow
def test_online_selftrain_two_processes_reach_the_weights_of_one(runs, tiny_model_dir):
    """Online self-training: each process samples its questions (per-question seeds), and the
    two NLL terms are token means over the global batch, so 2 processes step as 1."""
    one, two = runs
    final = model_weights(two / "online" / "final")
    assert weights_changed(model_weights(tiny_model_dir), final)
    _assert_close(model_weights(one / "online" / "final"), final)
    rows1, rows2 = (_without_timing(read_metrics(d / "online")) for d in (one, two))
    assert [r["step"] for r in rows2] == [1, 2]
    for r1, r2 in zip(rows1, rows2, strict=True):
        assert r2 == pytest.approx(r1, rel=1e-4, abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("run, checkpoints, steps", [("sft", ["epoch-1", "epoch-2"], 4),
                                                      ("ppo", ["step-1", "step-2"], 2)])
def test_two_processes_write_each_file_once(run, checkpoints, steps, runs):
    _, two = runs
    run_dir = two / run
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "config.yaml", "final",
                                                         "metrics.jsonl", "tb"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == checkpoints
    leftovers = [p for p in run_dir.rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    assert not leftovers
    assert [r["step"] for r in read_metrics(run_dir)] == list(range(1, steps + 1))
    assert len(list((run_dir / "tb").iterdir())) == 1
    for name in checkpoints:
        ckpt = run_dir / "checkpoints" / name
        assert json.loads((ckpt / "trainer_state.json").read_text())["step"] >= 1
        assert (ckpt / "model" / "model.safetensors").is_file()
        # Accelerate keeps one RNG state per process; everything else exists once
        assert sorted(p.name for p in ckpt.glob("random_states_*")) == ["random_states_0.pkl",
                                                                          "random_states_1.pkl"]


@pytest.mark.slow
def test_eval_two_processes_give_the_records_of_one(runs):
    one, two = runs
    lines = [(d / "eval" / "predictions.jsonl").read_text().splitlines() for d in (one, two)]
    assert lines[1] == lines[0]  # greedy and k samples per question, in question order
    ids = [json.loads(ln)["id"] for ln in lines[1]]
    assert len(ids) == len(set(ids)) == N_EVAL
    summaries = [json.loads((d / "eval" / "eval.json").read_text()) for d in (one, two)]
    for s in summaries:
        s.pop("wall_s")
        s["settings"].pop("out")
    assert summaries[1] == summaries[0]


@pytest.mark.slow
def test_sample_two_processes_give_the_records_of_one(runs):
    one, two = runs
    text = (two / "s.jsonl").read_text()
    assert text == (one / "s.jsonl").read_text()
    ids = [json.loads(ln)["id"] for ln in text.splitlines()]
    assert len(ids) == len(set(ids)) == N_EVAL
