"""Runs that survive real life (tier 3, the tiny model): no poisoned checkpoint, --resume
checks what it resumes, checkpoints that fit real runs, one-line errors when the disk
refuses a write."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import torch

from reft.errors import TrainingError
from tests.fixtures import (
    assert_same_weights,
    error_lines,
    model_weights,
    read_metrics,
    reft_main,
    tree_digest,
    weights_changed,
)

SFT = ["--batch-size", 4, "--lr", 3e-3, "--log-every", 1, "--mixed-precision", "no"]
PPO = ["--rollout-batch-size", 2, "--mini-batch-size", 2, "--log-every", 1, "--mixed-precision", "no"]


def _sft(capsys, tiny_model_dir, tiny_data, out, *extra):
    return reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                     "--out", out, *SFT, *extra)


def _names(run) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


def _all_finite(ckpt) -> None:
    """Every tensor a checkpoint holds: weights, optimizer state, extra weights."""
    from safetensors.torch import load_file

    tensors = list(load_file(str(ckpt / "model" / "model.safetensors")).values())
    opt = torch.load(ckpt / "optimizer.bin", weights_only=True)
    tensors += [v for s in opt["state"].values() for v in s.values() if torch.is_tensor(v)]
    tensors += [v for d in torch.load(ckpt / "extra_weights.pt", weights_only=True) for v in d.values()]
    assert tensors and all(bool(torch.isfinite(t.float()).all()) for t in tensors), ckpt


def test_sft_resume_of_a_ppo_run_is_refused_and_leaves_it_alone(tmp_path, tiny_model_dir, tiny_data,
                                                                capsys):
    run = tmp_path / "ppo"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--max-steps", 1, "--max-new-tokens", 8, "--out", run, *PPO)
    assert rc == 0, err
    before = tree_digest(run)
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, run, "--resume")
    assert rc == 2
    assert error_lines(err) == [f"reft sft: error: --resume: {run / 'checkpoints' / 'step-1'} was "
                                "written by 'reft ppo', not 'reft sft'; choose another --out"]
    assert tree_digest(run) == before


def test_resume_with_other_settings_is_refused_unless_asked(tmp_path, tiny_model_dir, tiny_data,
                                                            capsys):
    run = tmp_path / "run"
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, run, "--epochs", 1)
    assert rc == 0, err
    before = tree_digest(run)
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, run, "--epochs", 2, "--lr", 1e-3, "--resume")
    assert rc == 2
    assert error_lines(err) == [
        "reft sft: error: --resume: epoch-1 was written with other settings: --epochs: 1 "
        "(checkpoint) vs 2 (now); --lr: 0.003 (checkpoint) vs 0.001 (now); pass "
        "--resume-changed to continue with these"]
    assert tree_digest(run) == before
    # what a killed checkpoint write left is cleared when the run starts again
    (run / "checkpoints" / ".tmp-epoch-2-abc").mkdir()
    (run / ".tmp-final-abc").mkdir()
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, run, "--epochs", 2, "--lr", 1e-3, "--resume",
                      "--resume-changed")
    assert rc == 0, err
    (line,) = (run / "resumes.jsonl").read_text().splitlines()
    row = json.loads(line)
    assert row["checkpoint"] == "epoch-1" and row["step"] == 2
    assert row["changed"] == {"epochs": [1, 2], "lr": [0.003, 0.001]}
    assert _names(run) == ["epoch-1", "epoch-2"]
    assert not list(run.rglob(".tmp-*"))
    # the new checkpoint records the settings it was written with
    state = json.loads((run / "checkpoints" / "epoch-2" / "trainer_state.json").read_text())
    assert state["run"]["stage"] == "sft" and state["run"]["settings"]["lr"] == 1e-3


def test_sft_saves_every_n_steps_keeps_the_newest_and_caps_the_schedule(tmp_path, tiny_model_dir,
                                                                       tiny_data, capsys):
    """8 examples, batch 4: 2 steps an epoch; 3 epochs capped at 5 steps. Checkpoints:
    step-1, epoch-1 (step 2), step-3, epoch-2 (step 4); the newest 2 kept. Every folder and
    file of a checkpoint and of final/ is 0755/0644 even under umask 077, and the weights are
    stored once (model/, not Accelerate's model.safetensors)."""
    run = tmp_path / "run"
    old = os.umask(0o077)
    try:
        rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, run, "--epochs", 3, "--max-steps", 5,
                          "--save-every", 1, "--save-total-limit", 2, "--warmup-ratio", 0)
    finally:
        os.umask(old)
    assert rc == 0, err
    assert _names(run) == ["epoch-2", "step-3"]
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["optim/lr"] == 0.0  # linear decay reaches 0 at the capped total
    assert all(r["optim/skipped_steps"] == 0 for r in rows)
    for folder in (run / "checkpoints" / "epoch-2", run / "final"):
        for p in [folder, *folder.rglob("*")]:
            assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p
    ckpt = run / "checkpoints" / "epoch-2"
    assert (ckpt / "model" / "model.safetensors").is_file()
    assert not list(ckpt.glob("model*.safetensors")) and not list(ckpt.glob("pytorch_model*"))
    assert weights_changed(model_weights(run / "checkpoints" / "step-3" / "model"),
                           model_weights(ckpt / "model"))


def test_lora_resume_is_exact_from_the_adapter_alone(tmp_path, tiny_model_dir, tiny_data, capsys):
    """A LoRA checkpoint stores the adapter (model/) and no base weights; resuming from it
    ends where an uninterrupted run does."""
    args = ["--epochs", 2, "--lora-r", 4]
    a, b = tmp_path / "a", tmp_path / "b"
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, a, *args)
    assert rc == 0, err
    ckpt = a / "checkpoints" / "epoch-1"
    assert (ckpt / "model" / "adapter_model.safetensors").is_file()
    assert sum(p.stat().st_size for p in ckpt.rglob("*") if p.is_file()) < 150_000  # no base copy
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "epoch-2")
    shutil.rmtree(b / "final")
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, b, *args, "--resume")
    assert rc == 0, err
    assert_same_weights(model_weights(a / "final"), model_weights(b / "final"), atol=0)


def test_a_nan_step_is_skipped_and_training_goes_on(tmp_path, tiny_model_dir, tiny_data, monkeypatch):
    import reft.training.nll as nll
    import reft.training.sft as sft
    from reft.config import SFTConfig

    real, calls = nll.token_nll, []

    def token_nll(model, batch):
        loss, n = real(model, batch)
        calls.append(1)
        return (loss * math.nan if len(calls) == 3 else loss), n  # step 3 only

    monkeypatch.setattr(nll, "token_nll", token_nll)
    out = tmp_path / "run"
    sft.train_sft(SFTConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train), out=str(out),
                            epochs=2, batch_size=4, log_every=1, mixed_precision="no",
                            save_every=1, save_total_limit=0))
    rows = read_metrics(out)
    assert [r["optim/skipped_steps"] for r in rows] == [0, 0, 1, 1]
    assert math.isnan(rows[2]["loss/nll"]) and math.isfinite(rows[3]["loss/nll"])
    ck = out / "checkpoints"
    # step 3 left the weights as they were; step 4 trained again
    assert not weights_changed(model_weights(ck / "epoch-1" / "model"), model_weights(ck / "step-3" / "model"))
    assert weights_changed(model_weights(ck / "step-3" / "model"), model_weights(out / "final"))
    for name in ("epoch-1", "step-3", "epoch-2"):
        _all_finite(ck / name)


def test_poisoned_weights_are_never_saved(tmp_path, tiny_model_dir, tiny_data, monkeypatch):
    """Weights that went bad past the gradient check are refused at the next save."""
    import reft.training.sft as sft
    from reft.config import SFTConfig
    from reft.training.loop import Loop

    real = Loop.apply_update

    def apply_update(self, params, opt, sched=None, detail=""):
        params = list(params)
        ok = real(self, params, opt, sched, detail)
        if self.step == 2:  # the update of step 3
            with torch.no_grad():
                params[0].view(-1)[0] = math.inf
        return ok

    monkeypatch.setattr(Loop, "apply_update", apply_update)
    out = tmp_path / "run"
    cfg = SFTConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train), out=str(out),
                    epochs=2, batch_size=4, log_every=1, mixed_precision="no")
    with pytest.raises(TrainingError, match=r"^step 4: non-finite weight \S+; not saved; last good "
                                            r"checkpoint: .*epoch-1$"):
        sft.train_sft(cfg)
    assert _names(out) == ["epoch-1"] and not (out / "final").exists()
    assert not list(out.rglob(".tmp-*"))


def test_ppo_divergence_stops_with_the_rule_the_value_and_the_last_good_checkpoint(
        tmp_path, tiny_model_dir, tiny_data, capsys):
    out = tmp_path / "run"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--lr", 0.3, "--max-new-tokens", 64, "--save-every", 1, "--out", out, *PPO)
    assert rc == 1
    (line,) = error_lines(err)
    m = re.fullmatch(r"reft ppo: training stopped: step (\d+): diverged: policy/kl (\S+) > --kl-stop "
                     r"100; last good checkpoint: (\S+)", line)
    assert m, line
    step, kl, ckpt = int(m[1]), float(m[2]), m[3]
    assert kl > 100 and ckpt == str(out / "checkpoints" / f"step-{step - 1}")
    assert not (out / "final").exists()


def test_ppo_entropy_collapse_stops(tmp_path, tiny_model_dir, tiny_data, capsys):
    out = tmp_path / "run"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--entropy-stop", 50, "--max-new-tokens", 8, "--out", out, *PPO)
    assert rc == 1
    (line,) = error_lines(err)
    assert re.fullmatch(r"reft ppo: training stopped: step 1: collapsed: policy/entropy \S+ < "
                        r"--entropy-stop 50; no checkpoint was written yet", line), line


def test_ppo_blow_up_leaves_no_nan_checkpoint(tmp_path, tiny_model_dir, tiny_data, capsys):
    out = tmp_path / "run"
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--lr", 1e3, "--save-every", 1, "--save-total-limit", 0,
                           "--max-new-tokens", 16, "--out", out, *PPO)
    assert rc in (0, 1), err
    if rc == 1:
        (line,) = error_lines(err)
        assert re.fullmatch(r"reft ppo: training stopped: step \d+: .*; (last good checkpoint: "
                            r"\S+|no checkpoint was written yet)", line), line
    kept = list((out / "checkpoints").iterdir()) if (out / "checkpoints").exists() else []
    for ckpt in kept:
        _all_finite(ckpt)


def test_a_full_disk_while_saving_is_one_line_and_leaves_nothing(tmp_path, tiny_model_dir, tiny_data):
    """The file size limit stands in for a full disk: torch.save's RuntimeError is told
    apart by a probe write and reported with its cause."""
    out = tmp_path / "run"
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            "from reft.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, "sft", "--model", str(tiny_model_dir),
                           "--train-file", str(tiny_data.train), "--out", str(out),
                           *map(str, SFT), "--epochs", "1"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [
        f"reft sft: error: cannot write {out / 'checkpoints' / 'epoch-1'}: File too large"]
    assert list((out / "checkpoints").iterdir()) == []
    assert not list(out.rglob(".tmp-*")) and not (out / "final").exists()


def test_a_read_only_out_is_one_line_exit_1(tmp_path, tiny_model_dir, tiny_data, capsys, monkeypatch):
    import errno
    from pathlib import Path

    out = tmp_path / "ro" / "run"
    real = Path.mkdir

    def mkdir(self, *a, **kw):
        if self == out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, out, "--epochs", 1)
    assert rc == 1
    assert error_lines(err) == [f"reft sft: error: cannot write {out}: Read-only file system"]
    assert not out.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_out_is_one_line_exit_1(tmp_path, tiny_model_dir, tiny_data, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        rc, _, err = _sft(capsys, tiny_model_dir, tiny_data, parent / "run", "--epochs", 1)
    finally:
        parent.chmod(0o755)
    assert rc == 1
    assert error_lines(err) == [f"reft sft: error: cannot write {parent / 'run'}: Permission denied"]
