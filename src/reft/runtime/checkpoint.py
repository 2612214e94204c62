"""Run directories and checkpoints.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON
object per logged step), TensorBoard events under ``tb/``, ``checkpoints/<name>/`` (HF
model directory + Accelerate optimizer/scheduler/RNG state + ``trainer_state.json``) and
``final/`` (an HF model directory). Checkpoints and ``final/`` are written to a temporary
sibling and renamed into place, so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reft.configio import save_config
from reft.errors import UserError
from reft.runtime.dist import shards_params
from reft.runtime.io import atomic_dir, commit_dir, write_json_atomic


def require(cfg: Any, *names: str) -> None:
    """Fail with a one-line message when a required setting is empty."""
    for name in names:
        if not getattr(cfg, name):
            raise UserError(f"--{name.replace('_', '-')} is required")


@dataclass
class TrainerState:
    """Where a run is: saved in every checkpoint as trainer_state.json."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    def to_json(self) -> dict[str, int]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}


def check_run_dir(cfg: Any) -> None:
    """Refuse to start a fresh run over another run's checkpoints (before any slow work)."""
    run_dir = Path(cfg.out)
    if run_dir.exists() and not cfg.resume and any(run_dir.glob("checkpoints/*")):
        raise UserError(
            f"{run_dir}: already holds checkpoints; pass --resume to continue or choose another --out"
        )


def prepare_run_dir(cfg: Any, accelerator) -> Path:
    """Create the run directory and write the resolved config (main process only)."""
    run_dir = Path(cfg.out)
    if accelerator.is_main_process:
        check_run_dir(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    accelerator.wait_for_everyone()
    return run_dir


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary ones are ignored)."""
    ckpts = [p for p in (run_dir / "checkpoints").glob("*") if (p / "trainer_state.json").exists()]
    if not ckpts:
        return None
    return max(ckpts, key=lambda p: json.loads((p / "trainer_state.json").read_text())["step"])


def save_checkpoint(accelerator, run_dir: Path, name: str, state: TrainerState, save_model) -> Path:
    """Write ``checkpoints/<name>`` atomically: Accelerate state + HF model dir + trainer state.

    ``save_model(dir)`` is called on every process (gathering sharded weights is
    collective) and writes the HF model directory from the main process only.
    """
    final = run_dir / "checkpoints" / name
    tmp_path = _shared_tmp(accelerator, final)
    accelerator.save_state(str(tmp_path))
    save_model(tmp_path / "model")
    if accelerator.is_main_process:
        write_json_atomic(tmp_path / "trainer_state.json", state.to_json())
        commit_dir(tmp_path, final)
    accelerator.wait_for_everyone()
    return final


def _shared_tmp(accelerator, final: Path) -> Path:
    """A temporary directory beside ``final``, made by the main process, its name sent to all."""
    shared = [str(atomic_dir(final)) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(shared)
    return Path(shared[0])


def load_checkpoint(accelerator, ckpt: Path) -> TrainerState:
    accelerator.load_state(str(ckpt))
    return TrainerState(**json.loads((ckpt / "trainer_state.json").read_text()))


def save_final(accelerator, run_dir: Path, save_model) -> Path:
    """Write ``final/`` atomically; ``save_model`` as in ``save_checkpoint``."""
    final = run_dir / "final"
    tmp = _shared_tmp(accelerator, final)
    save_model(tmp)
    if accelerator.is_main_process:
        commit_dir(tmp, final)
    accelerator.wait_for_everyone()
    return final


def full_state_dict(accelerator, prepared, module) -> dict | None:
    """``module``'s whole weights when parameters are sharded (collective: call on every
    process; the main process gets them), else None (the module holds them itself).

    ``prepared`` is the model given to ``accelerator.prepare``; ``module`` is it or one of
    its submodules, whose keys are returned without the submodule's prefix.
    """
    if not shards_params(accelerator):
        return None
    state = accelerator.get_state_dict(prepared)
    if not accelerator.is_main_process:
        return {}
    root = accelerator.unwrap_model(prepared)
    prefix = next(n for n, m in root.named_modules() if m is module)
    prefix = f"{prefix}." if prefix else ""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
