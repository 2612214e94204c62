"""--resume continues exactly: a run stopped after a checkpoint and resumed ends with the
same weights (and metrics) as one that was never stopped.

The "stopped" run is a copy of the uninterrupted one with everything after the checkpoint
deleted (and a torn half line appended to metrics.jsonl, as a kill mid-write leaves):
training is deterministic, so that is the state a run killed there would have left.
"""

from __future__ import annotations

import shutil

import pytest

from tests.fixtures import (
    assert_same_weights,
    model_weights,
    read_metrics,
    reft_main,
    weights_changed,
)


def _stop_after(src, dst, checkpoint: str, later: list[str]) -> None:
    shutil.copytree(src, dst)
    for name in later:
        shutil.rmtree(dst / "checkpoints" / name)
    shutil.rmtree(dst / "final")
    with (dst / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 1.')  # torn line from a killed write
    assert (dst / "checkpoints" / checkpoint / "trainer_state.json").is_file()


def _assert_same_metrics(rows: list[dict], expected: list[dict]) -> None:
    """Row by row equal, wall-clock timings aside."""
    assert len(rows) == len(expected)
    for r, e in zip(rows, expected, strict=True):
        r, e = ({k: v for k, v in x.items() if not k.startswith("time/") and k != "perf/tokens_per_s"}
                for x in (r, e))
        assert r == pytest.approx(e, nan_ok=True)


def test_sft_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, tiny_data, capsys):
    args = ["sft", "--model", tiny_model_dir, "--train-file", tiny_data.train, "--epochs", 2,
            "--batch-size", 4, "--lr", 3e-3, "--log-every", 1, "--mixed-precision", "no"]
    a, b = tmp_path / "a", tmp_path / "b"
    rc, _, err = reft_main(capsys, *args, "--out", a)
    assert rc == 0, err
    _stop_after(a, b, "epoch-1", later=["epoch-2"])
    rc, _, err = reft_main(capsys, *args, "--out", b, "--resume")
    assert rc == 0, err
    assert_same_weights(model_weights(a / "final"), model_weights(b / "final"))
    # the epoch-2 update really happened after the resume (not a copy of epoch 1)
    assert weights_changed(model_weights(b / "checkpoints" / "epoch-1" / "model"),
                           model_weights(b / "final"))
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    _assert_same_metrics(rows_b, rows_a)
    # TensorBoard too shows each step once: the resumed run purges the points it redoes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(b / "tb"))
    tb.Reload()
    loss = tb.Scalars("loss/nll")
    assert [e.step for e in loss] == [1, 2, 3, 4]
    assert [e.value for e in loss] == pytest.approx([r["loss/nll"] for r in rows_a])


@pytest.mark.slow
def test_ppo_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, tiny_data, capsys):
    """Sampling draws from the global torch RNG: the checkpoint must restore it too. Two
    steps per epoch, so the resumed half starts a new epoch (a new shuffle)."""
    from safetensors.torch import load_file

    args = ["ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train, "--max-examples", 4,
            "--epochs", 2, "--rollout-batch-size", 2, "--mini-batch-size", 2, "--ppo-epochs", 1,
            "--max-steps", 4,
            "--save-every", 2, "--log-every", 1, "--max-new-tokens", 12, "--lr", 1e-3,
            "--mixed-precision", "no"]
    a, b = tmp_path / "a", tmp_path / "b"
    rc, _, err = reft_main(capsys, *args, "--out", a)
    assert rc == 0, err
    _stop_after(a, b, "step-2", later=["step-4"])
    rc, _, err = reft_main(capsys, *args, "--out", b, "--resume")
    assert rc == 0, err
    assert_same_weights(model_weights(a / "final"), model_weights(b / "final"))
    heads = [load_file(str(d / "final" / "value_head.safetensors")) for d in (a, b)]
    assert_same_weights(*heads)
    rows_a, rows_b = read_metrics(a), read_metrics(b)
    assert [(r["step"], r["epoch"]) for r in rows_b] == [(1, 1), (2, 1), (3, 2), (4, 2)]
    _assert_same_metrics(rows_b, rows_a)
