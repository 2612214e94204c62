"""What a checkpoint records about the run that wrote it, and what ``--resume`` checks.

Every checkpoint's ``trainer_state.json`` holds ``run``: the stage that wrote it (``sft``,
``ppo``, ``selftrain``, ``reranker``, from the config's class) and the settings that
change what the run computes: every field of the config (nested groups' fields under
their own flag names) except those in ``IGNORED``, which only say where output goes, how
often to log, evaluate or save, or when to stop or warn:

    out, resume, resume_changed, log_every, save_every, save_total_limit, report_to,
    max_bad_steps, kl_warn, kl_stop, entropy_stop, eval_every, eval_examples, test_file

(periodic evaluation is greedy and reads no training state). ``max_steps`` and ``epochs``
are compared: they set the learning-rate schedule's length. Paths (``--model``,
``--train-file``) are compared as given.

``--resume`` refuses, with one line (a ``UserError``, exit status 2) and before anything in
the run directory is written, a checkpoint of another stage, or one written with other
settings, listing each difference (``--lr: 1e-05 (checkpoint) vs 2e-05 (now)``).
``--resume-changed`` accepts other settings (never another stage); every resume appends a
line to ``RUN/resumes.jsonl`` with the checkpoint it continued and the settings changed.
Checkpoints written before this record existed are resumed unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from reft.errors import UserError
from reft.runtime.io import write_atomic

IGNORED = frozenset({
    "out", "resume", "resume_changed", "log_every", "save_every", "save_total_limit",
    "report_to", "max_bad_steps", "kl_warn", "kl_stop", "entropy_stop", "eval_every",
    "eval_examples", "test_file", "val_file",
})
"""Settings that do not change what a run computes: never compared on resume."""

STAGES = {"SFTConfig": "sft", "PPOConfig": "ppo", "SelfTrainConfig": "selftrain",
          "RerankerConfig": "reranker"}
COMMANDS = {"reranker": "reft reranker train"}
"""The command of a stage, where it is not ``reft <stage>``."""

RESUMES_FILE = "resumes.jsonl"


def stage_of(cfg: Any) -> str:
    """The stage a config runs: ``sft``, ``ppo``, ``selftrain`` or ``reranker``."""
    name = type(cfg).__name__
    return STAGES.get(name, name.removesuffix("Config").lower())


def command_of(stage: str) -> str:
    """The command line that runs ``stage``."""
    return COMMANDS.get(stage, f"reft {stage}")


def settings_of(cfg: Any) -> dict[str, Any]:
    """The settings of ``cfg`` that change the result, flat, as JSON values."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(settings_of(value))
        elif f.name not in IGNORED:
            out[f.name] = value
    return json.loads(json.dumps(out))


def run_record(cfg: Any) -> dict[str, Any]:
    """What a checkpoint stores about its run (``trainer_state.json``'s ``run``)."""
    return {"stage": stage_of(cfg), "settings": settings_of(cfg)}


def differences(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, list]:
    """Setting -> [checkpoint's value, current value], for each that differs."""
    keys = sorted(saved.keys() | now.keys())
    return {k: [saved.get(k), now.get(k)] for k in keys if saved.get(k) != now.get(k)}


def _show(value: Any) -> str:
    return "unset" if value is None else str(value)


def describe(changes: dict[str, list]) -> str:
    """``--lr: 1e-05 (checkpoint) vs 2e-05 (now); ...``"""
    return "; ".join(f"--{k.replace('_', '-')}: {_show(a)} (checkpoint) vs {_show(b)} (now)"
                     for k, (a, b) in changes.items())


def check_resume(cfg: Any, ckpt: Path, record: dict | None) -> dict[str, list]:
    """The settings changed since ``ckpt`` (whose ``run`` record is ``record``) was written,
    when resuming it with ``cfg`` is allowed; else a one-line ``UserError``."""
    if not record:
        return {}
    stage, was = stage_of(cfg), record.get("stage")
    if was != stage:
        raise UserError(f"--resume: {ckpt} was written by '{command_of(was)}', not "
                        f"'{command_of(stage)}'; choose another --out")
    changes = differences(record.get("settings", {}), settings_of(cfg))
    if changes and not cfg.resume_changed:
        raise UserError(f"--resume: {ckpt.name} was written with other settings: "
                        f"{describe(changes)}; pass --resume-changed to continue with these")
    return changes


def record_resume(run_dir: Path, ckpt: Path, step: int, changes: dict[str, list]) -> None:
    """Append a line to ``RUN/resumes.jsonl``: when, from which checkpoint, what changed."""
    path = run_dir / RESUMES_FILE
    before = path.read_text() if path.exists() else ""
    row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "checkpoint": ckpt.name, "step": step,
           "changed": changes}
    write_atomic(path, before + json.dumps(row) + "\n")
