"""SIGTERM/SIGINT during training: the step finishes, a resumable checkpoint is saved, one
line says how to resume, the exit status is 143/130; resuming ends where an uninterrupted
run does."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reft.errors import TrainingError
from reft.runtime.signals import Interrupted, StopSignals
from tests.fixtures import assert_same_weights, error_lines, model_weights, read_metrics, run_reft

ARGS = ["--batch-size", 4, "--epochs", 60, "--lr", 3e-3, "--log-every", 1, "--save-every", 1000,
        "--mixed-precision", "no"]  # 8 examples: 2 steps an epoch, 120 in all


def _sft_args(tiny_model_dir, tiny_data, out) -> list:
    return ["sft", "--model", tiny_model_dir, "--train-file", tiny_data.train, "--out", out, *ARGS]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_dir, tiny_data):
    cwd = tmp_path_factory.mktemp("whole")
    proc = run_reft(*_sft_args(tiny_model_dir, tiny_data, cwd / "run"), cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "run"


@pytest.mark.slow
@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_resume_finishes_the_same(sig, status, tmp_path, uninterrupted,
                                                                tiny_model_dir, tiny_data):
    out = tmp_path / "run"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "reft",
                             *map(str, _sft_args(tiny_model_dir, tiny_data, out))],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before the signal"
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err[-3000:]
    assert "Traceback" not in err
    (line,) = error_lines(err)
    name = signal.Signals(sig).name
    m = re.fullmatch(rf"reft sft: interrupted: {name} after step (\d+): checkpoint (\S+); continue "
                     rf"with the same command plus --resume \(reft sft \.\.\. --out {re.escape(str(out))} "
                     r"--resume\)", line)
    assert m, line
    step, ckpt = int(m[1]), Path(m[2])
    # a new step-<n>, or the epoch-<n> checkpoint just written at that step
    assert 3 <= step < 120 and ckpt.parent == out / "checkpoints"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == step
    assert not (out / "final").exists()
    proc = run_reft(*_sft_args(tiny_model_dir, tiny_data, out), "--resume", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 121))
    assert_same_weights(model_weights(uninterrupted / "final"), model_weights(out / "final"))


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
    sigs = StopSignals(lambda s: "stopped at once")
    sigs.install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert sigs.received == signal.SIGTERM
        with pytest.raises(Interrupted, match="stopped at once") as e:
            os.kill(os.getpid(), signal.SIGTERM)
        assert e.value.exit_status == 143
    finally:
        sigs.restore()
    assert {s: signal.getsignal(s) for s in StopSignals.SIGNALS} == before


def test_a_failing_run_restores_the_signal_handlers(tmp_path, tiny_model_dir, tiny_data, monkeypatch):
    import reft.training.nll as nll
    import reft.training.sft as sft
    from reft.config import SFTConfig

    real = nll.token_nll
    monkeypatch.setattr(nll, "token_nll", lambda m, b: (real(m, b)[0] * math.nan, 1))
    before = {s: signal.getsignal(s) for s in StopSignals.SIGNALS}
    with pytest.raises(TrainingError, match="step 1: non-finite gradient norm"):
        sft.train_sft(SFTConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train),
                                out=str(tmp_path / "run"), epochs=1, batch_size=4,
                                mixed_precision="no", max_bad_steps=1))
    assert {s: signal.getsignal(s) for s in StopSignals.SIGNALS} == before
