"""``reft sft`` end to end (tier 3): a few steps on the tiny model, the run directory it
leaves, and one-line failures for bad input."""

from __future__ import annotations

import math

import pytest
import yaml

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


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_model_dir, tiny_data):
    """One CLI run: settings from a YAML file, one of them overridden by a flag.

    8 examples, batch 4, 2 epochs -> 4 optimizer steps, a checkpoint after each epoch.
    """
    cwd = tmp_path_factory.mktemp("sft")
    (cwd / "sft.yaml").write_text(yaml.safe_dump(
        {"epochs": 2, "batch_size": 8, "lr": 3e-3, "log_every": 1, "warmup_ratio": 0.0}))
    proc = run_reft("sft", "--config", "sft.yaml", "--batch-size", 4, "--model", tiny_model_dir,
                    "--train-file", tiny_data.train, "--out", "run", "--mixed-precision", "no",
                    cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return cwd / "run"


def test_run_dir_holds_the_resolved_config(sft_run):
    cfg = yaml.safe_load((sft_run / "config.yaml").read_text())
    assert cfg["epochs"] == 2 and cfg["lr"] == 3e-3  # from the YAML file
    assert cfg["batch_size"] == 4  # the flag beats the YAML file


def test_metrics_have_one_finite_row_per_step(sft_run):
    rows = read_metrics(sft_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["epoch"] for r in rows] == [1, 1, 2, 2]
    for r in rows:
        assert {"step", "epoch", "loss/nll", "optim/lr", "perf/tokens_per_s"} <= r.keys()
        assert finite(r["loss/nll"]) and r["loss/nll"] > 0
        assert finite(r["optim/lr"]) and finite(r["perf/tokens_per_s"]) and r["perf/tokens_per_s"] > 0


def test_tensorboard_events_carry_the_loss(sft_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = list((sft_run / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(sft_run / "tb"))
    acc.Reload()
    assert {"loss/nll", "optim/lr", "perf/tokens_per_s"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss/nll")] == [1, 2, 3, 4]


def test_checkpoints_and_final_model(sft_run, tiny_model_dir):
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    for epoch, step in ((1, 2), (2, 4)):
        ckpt = sft_run / "checkpoints" / f"epoch-{epoch}"
        assert (ckpt / "model" / "config.json").is_file()
        assert (ckpt / "model" / "model.safetensors").is_file()
        state = json.loads((ckpt / "trainer_state.json").read_text())
        assert state["step"] == step and state["epoch"] == epoch
    assert not [p for p in sft_run.rglob(".tmp-*")]  # atomic writes left nothing behind
    final = sft_run / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert model.config.vocab_size == len(tok)
    init, trained = model_weights(tiny_model_dir), model_weights(final)
    assert weights_changed(init, trained)
    assert not weights_changed(model_weights(sft_run / "checkpoints" / "epoch-2" / "model"), trained)


def test_rerun_into_the_same_out_is_refused_and_leaves_it_alone(sft_run, tiny_model_dir, tiny_data,
                                                                capsys):
    before = tree_digest(sft_run)
    rc, _, err = reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--out", sft_run, "--epochs", 1)
    assert rc == 2
    assert error_lines(err) == [f"reft sft: error: {sft_run}: already holds checkpoints; pass "
                                "--resume to continue or choose another --out"]
    assert tree_digest(sft_run) == before


def test_bad_flag_is_a_one_line_usage_error(tmp_path):
    proc = run_reft("sft", "--no-such-flag", 1, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "reft: error: unrecognized arguments: --no-such-flag 1 (see 'reft --help')"]


def test_missing_model_is_one_line_without_traceback(tmp_path, tiny_data):
    proc = run_reft("sft", "--train-file", tiny_data.train, "--out", "run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["reft sft: error: --model is required"]
    assert not (tmp_path / "run").exists()


def test_unknown_yaml_key_names_the_key(tmp_path, tiny_model_dir, tiny_data, capsys):
    (tmp_path / "bad.yaml").write_text("epochs: 1\nlearning_rate: 0.1\n")
    rc, _, err = reft_main(capsys, "sft", "--config", tmp_path / "bad.yaml", "--model", tiny_model_dir,
                           "--train-file", tiny_data.train, "--out", tmp_path / "run")
    assert rc == 2
    (line,) = error_lines(err)
    assert "unknown key 'learning_rate'" in line and "bad.yaml" in line
    assert not (tmp_path / "run").exists()


def test_missing_train_file_is_one_line_and_makes_no_run_dir(tmp_path, tiny_model_dir, capsys):
    rc, _, err = reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file",
                           tmp_path / "nope.json", "--out", tmp_path / "run")
    assert rc == 2
    (line,) = error_lines(err)
    assert line.startswith("reft sft: error:") and "nope.json" in line
    assert not (tmp_path / "run").exists()


def test_nan_loss_stops_sft_and_keeps_the_last_checkpoint(tmp_path, tiny_model_dir, tiny_data,
                                                          monkeypatch):
    """A non-finite loss in epoch 2 is a skipped step (its gradients are not finite); with
    --max-bad-steps 1 the first one stops the run; epoch-1 stays intact."""
    import reft.training.nll as nll
    import reft.training.sft as sft
    from reft.config import SFTConfig

    real, calls = nll.token_nll, []

    def token_nll(model, batch):
        nll, n = real(model, batch)
        calls.append(1)
        return (nll * math.nan if len(calls) > 2 else nll), n  # steps 1-2 fine, step 3 nan

    monkeypatch.setattr(nll, "token_nll", token_nll)
    out = tmp_path / "run"
    cfg = SFTConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train), out=str(out),
                    epochs=2, batch_size=4, log_every=1, mixed_precision="no", max_bad_steps=1)
    with pytest.raises(TrainingError, match=r"^step 3: non-finite gradient norm \(nan; loss/nll=nan\); "
                       r"1 bad optimizer step in a row \(--max-bad-steps 1\); "
                       r"last good checkpoint: .*epoch-1$"):
        sft.train_sft(cfg)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-1"]
    assert not (out / "final").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "checkpoints" / "epoch-1" / "model")
