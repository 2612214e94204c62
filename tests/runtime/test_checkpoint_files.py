"""Checkpoint files without a model: what --resume compares, stale temporary folders,
rotation, file modes and refused writes (runtime.resume, runtime.io, runtime.checkpoint)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

from reft.config import PPOConfig, SamplingConfig, SelfTrainConfig, SFTConfig
from reft.errors import UserError
from reft.runtime.checkpoint import checkpoints, rotate_checkpoints
from reft.runtime.io import CannotWrite, commit_dir, remove_stale, write_atomic
from reft.runtime.resume import check_resume, run_record, settings_of


def test_settings_leave_out_where_and_how_often_and_flatten_groups():
    cfg = PPOConfig(model="m", out="runs/a", log_every=3, save_every=7, eval_every=2,
                    sampling=SamplingConfig(max_new_tokens=12))
    s = settings_of(cfg)
    assert s["max_new_tokens"] == 12 and s["model"] == "m" and s["lr"] is None
    assert not {"out", "resume", "resume_changed", "log_every", "save_every", "save_total_limit",
                "report_to", "eval_every", "kl_stop", "sampling"} & s.keys()
    # those settings do not make a checkpoint another run's
    other = PPOConfig(model="m", out="elsewhere", log_every=1, save_every=1, resume=True,
                      sampling=SamplingConfig(max_new_tokens=12))
    assert settings_of(other) == s


def test_resume_refuses_another_stage_in_one_line():
    record = run_record(PPOConfig(model="m"))
    with pytest.raises(UserError) as e:
        check_resume(SFTConfig(model="m", resume=True), Path("run/checkpoints/step-4"), record)
    msg = str(e.value)
    assert msg == ("--resume: run/checkpoints/step-4 was written by 'reft ppo', not 'reft sft'; "
                   "choose another --out")
    # not even deliberately
    with pytest.raises(UserError, match="not 'reft sft'"):
        check_resume(SFTConfig(model="m", resume=True, resume_changed=True), Path("x"), record)


def test_resume_lists_every_changed_setting():
    record = run_record(SFTConfig(model="m", lr=1e-5, epochs=2))
    now = SFTConfig(model="m", lr=2e-5, epochs=3, resume=True)
    with pytest.raises(UserError) as e:
        check_resume(now, Path("run/checkpoints/epoch-1"), record)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg == ("--resume: epoch-1 was written with other settings: --epochs: 2 (checkpoint) "
                   "vs 3 (now); --lr: 1e-05 (checkpoint) vs 2e-05 (now); pass --resume-changed "
                   "to continue with these")
    accepted = SFTConfig(model="m", lr=2e-5, epochs=3, resume=True, resume_changed=True)
    assert check_resume(accepted, Path("x"), record) == {"epochs": [2, 3], "lr": [1e-5, 2e-5]}
    assert check_resume(SFTConfig(model="m", lr=1e-5, epochs=2, resume=True), Path("x"), record) == {}
    assert check_resume(now, Path("x"), None) == {}  # a checkpoint from before the record


def test_selftrain_is_its_own_stage():
    assert run_record(SelfTrainConfig(model="m"))["stage"] == "selftrain"


def _ckpt(root: Path, name: str, step: int) -> Path:
    d = root / "checkpoints" / name
    d.mkdir(parents=True)
    (d / "trainer_state.json").write_text(json.dumps({"step": step}))
    return d


def test_stale_temporary_folders_are_removed_and_a_lost_checkpoint_put_back(tmp_path):
    ck = tmp_path / "checkpoints"
    keep = _ckpt(tmp_path, "step-2", 2)
    (ck / ".tmp-step-4-abc_12").mkdir()  # a write killed before its rename
    (ck / ".tmp-step-4-abc_12" / "optimizer.bin").write_bytes(b"x")
    (ck / ".old-step-2-99").mkdir()  # replaced, then the process was killed
    (ck / ".del-step-1-99").mkdir()  # a deletion killed midway
    lost = _ckpt(tmp_path, "step-3", 3)
    lost.rename(ck / ".old-step-3-77")  # killed between commit_dir's two renames
    removed = remove_stale(ck)
    assert sorted(p.name for p in removed) == [".del-step-1-99", ".old-step-2-99", ".tmp-step-4-abc_12"]
    assert sorted(p.name for p in ck.iterdir()) == ["step-2", "step-3"]
    assert [p.name for p in checkpoints(tmp_path)] == ["step-2", "step-3"] and keep.exists()


def test_rotation_keeps_the_newest_and_never_the_one_just_written(tmp_path):
    for step in (1, 2, 3):
        _ckpt(tmp_path, f"step-{step}", step)
    epoch = _ckpt(tmp_path, "epoch-1", 4)
    deleted = rotate_checkpoints(tmp_path, 2, epoch)
    assert [p.name for p in deleted] == ["step-1", "step-2"]
    assert [p.name for p in checkpoints(tmp_path)] == ["step-3", "epoch-1"]
    assert not list((tmp_path / "checkpoints").glob(".*"))
    assert rotate_checkpoints(tmp_path, 1, epoch) and [p.name for p in checkpoints(tmp_path)] == ["epoch-1"]
    assert rotate_checkpoints(tmp_path, 0, epoch) == []  # 0 keeps all


def test_committed_folders_are_readable_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        tmp = tmp_path / ".tmp-x"
        (tmp / "sub").mkdir(parents=True)
        (tmp / "sub" / "w.bin").write_bytes(b"1")
        os.chmod(tmp / "sub" / "w.bin", 0o600)
        commit_dir(tmp, tmp_path / "x")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "x", *(tmp_path / "x").rglob("*")]}
    assert modes == {"x": 0o755, "sub": 0o755, "w.bin": 0o644}


def test_a_refused_write_is_an_environment_failure_and_leaves_nothing(tmp_path, monkeypatch):
    real = os.replace

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(CannotWrite) as e:
        write_atomic(tmp_path / "a.json", "{}")
    assert str(e.value) == f"cannot write {tmp_path / 'a.json'}: Read-only file system"
    assert e.value.exit_status == 1
    monkeypatch.setattr(os, "replace", real)
    assert list(tmp_path.iterdir()) == []
    # a file where a folder should be is the user's path to fix: a plain UserError (exit 2)
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError) as e:
        write_atomic(tmp_path / "f" / "a.json", "{}")
    assert not isinstance(e.value, CannotWrite)


def test_cli_maps_a_refused_write_and_an_os_error_to_one_line_exit_1(monkeypatch, capsys):
    import reft.cli.commands as commands
    from reft.cli import main

    def refused(args):
        raise CannotWrite("cannot write runs/x/checkpoints/step-3: No space left on device")

    monkeypatch.setattr(commands, "sft", refused)
    assert main(["sft", "--model", "m", "--train-file", "t"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "reft sft: error: cannot write runs/x/checkpoints/step-3: No space left on device"]

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/metrics.jsonl")

    monkeypatch.setattr(commands, "sft", full)
    assert main(["sft", "--model", "m", "--train-file", "t"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "reft sft: error: runs/x/metrics.jsonl: No space left on device"]
