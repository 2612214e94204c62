"""Run directories and checkpoints.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON
object per logged step), TensorBoard events under ``tb/``, ``checkpoints/<name>/`` (HF
model directory ``model/`` + Accelerate optimizer/scheduler/RNG state + ``trainer_state.json``)
and ``final/`` (an HF model directory). Checkpoints and ``final/`` are written to a
temporary sibling and renamed into place, so an interrupted write never leaves a half
checkpoint; one that fails (read-only folder, disk full) leaves nothing and is a one-line
error. Every folder is 0755 and every file 0644. The weights are stored once, in ``model/``
(``reft.runtime.weights``); ``trainer_state.json`` records the stage and the settings that
wrote it, which ``--resume`` checks (``reft.runtime.resume``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reft.configio import save_config
from reft.errors import UserError
from reft.runtime.dist import shards_params
from reft.runtime.io import (
    atomic_dir,
    cannot_write,
    commit_dir,
    remove_dir,
    write_failure,
    write_json_atomic,
)
from reft.runtime.resume import check_resume
from reft.runtime.weights import weights_in_model_dir


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
    skipped_steps: int = 0
    """Optimizer steps skipped so far for non-finite gradients (``optim/skipped_steps``)."""

    def to_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> TrainerState:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def read_state(ckpt: Path) -> dict:
    """A checkpoint's ``trainer_state.json``."""
    return json.loads((ckpt / "trainer_state.json").read_text())


def check_run_dir(cfg: Any, run_cfg: Any = None) -> None:
    """Before any slow work and before anything is written: refuse to start a fresh run over
    another run's checkpoints, and check that ``--resume`` continues a checkpoint of the same
    stage and settings (``run_cfg``, default ``cfg``: the config the run records)."""
    run_dir = Path(cfg.out)
    if run_dir.exists() and not cfg.resume and any(run_dir.glob("checkpoints/*")):
        raise UserError(
            f"{run_dir}: already holds checkpoints; pass --resume to continue or choose another --out"
        )
    ckpt = last_checkpoint(run_dir) if cfg.resume else None
    if ckpt is not None:
        check_resume(run_cfg if run_cfg is not None else cfg, ckpt, read_state(ckpt).get("run"))


def prepare_run_dir(cfg: Any, accelerator, run_cfg: Any = None) -> Path:
    """Check the run directory (``check_run_dir``, every process), then create it and write
    the resolved config (main process only)."""
    run_dir = Path(cfg.out)
    check_run_dir(cfg, run_cfg)
    if accelerator.is_main_process:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(run_cfg if run_cfg is not None else cfg, run_dir / "config.yaml")
        except OSError as e:
            raise cannot_write(e.filename or run_dir, e) from None
    accelerator.wait_for_everyone()
    return run_dir


def checkpoints(run_dir: Path) -> list[Path]:
    """The complete checkpoints of a run, oldest first (temporary ones are ignored)."""
    found = []
    for p in (run_dir / "checkpoints").glob("*"):
        try:
            found.append((read_state(p)["step"], p.stat().st_mtime, p))
        except (OSError, ValueError, KeyError):
            continue
    return [p for *_, p in sorted(found)]


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (temporary ones are ignored)."""
    ckpts = checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator, run_dir: Path, name: str, state: TrainerState, save_model,
                    record: dict | None = None, module=None) -> Path:
    """Write ``checkpoints/<name>`` atomically: Accelerate state + HF model dir + trainer state
    (with ``record``: the run's stage and settings). ``module``: the model ``save_model``
    writes, whose weights Accelerate then leaves out (``reft.runtime.weights``).

    ``save_model(dir)`` is called on every process (gathering sharded weights is
    collective) and writes the HF model directory from the main process only.
    """
    final = run_dir / "checkpoints" / name

    def write(tmp: Path) -> None:
        with weights_in_model_dir(accelerator, module):
            accelerator.save_state(str(tmp))
        save_model(tmp / "model")
        if accelerator.is_main_process:
            write_json_atomic(tmp / "trainer_state.json", {**state.to_json(), "run": record})

    return _write_dir(accelerator, final, write)


def _write_dir(accelerator, final: Path, write) -> Path:
    """``write(tmp)`` into a temporary sibling of ``final``, then rename it into place; on
    any failure the temporary folder is removed. A failed write is a one-line error: an
    OSError's own, or for a library that hides the cause (``torch.save``'s RuntimeError on a
    full disk) the one a probe write finds (``write_failure``)."""
    tmp = _shared_tmp(accelerator, final)
    try:
        write(tmp)
        # every process writes its own files (Accelerate's random_states_<rank>.pkl): renamed
        # before the last of them, the folder would be made again by a late process
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            commit_dir(tmp, final)
    except BaseException as e:
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise cannot_write(final, e) from None
        cause = write_failure(final.parent) if isinstance(e, Exception) else None
        if cause is not None:
            raise cannot_write(final, cause) from e
        raise
    accelerator.wait_for_everyone()
    return final


def _shared_tmp(accelerator, final: Path) -> Path:
    """A temporary directory beside ``final``, made by the main process, its name sent to all."""
    shared = [str(atomic_dir(final)) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(shared)
    return Path(shared[0])


def load_checkpoint(accelerator, ckpt: Path, module=None) -> TrainerState:
    """Restore a checkpoint written by ``save_checkpoint`` (same ``module``)."""
    with weights_in_model_dir(accelerator, module):
        accelerator.load_state(str(ckpt))
    return TrainerState.from_json(read_state(ckpt))


def rotate_checkpoints(run_dir: Path, keep: int, newest: Path) -> list[Path]:
    """Delete the oldest complete checkpoints beyond the newest ``keep`` (0: keep all),
    never ``newest`` (the one just committed). Main process only. Returns those deleted."""
    if keep <= 0:
        return []
    old = [p for p in checkpoints(run_dir) if p != newest]
    doomed = old[: max(0, len(old) - (keep - 1))]
    for p in doomed:
        remove_dir(p)
    return doomed


def save_final(accelerator, run_dir: Path, save_model) -> Path:
    """Write ``final/`` atomically; ``save_model`` as in ``save_checkpoint``."""
    return _write_dir(accelerator, run_dir / "final", save_model)


def nonfinite_state(accelerator) -> str | None:
    """Which trainable weight or optimizer state tensor of the prepared models and
    optimizers is NaN or infinite (agreed by every process: collective), or None."""
    import torch

    bad = None
    for m in getattr(accelerator, "_models", []):
        for name, p in accelerator.unwrap_model(m).named_parameters():
            if p.requires_grad and not bool(torch.isfinite(p.detach()).all()):
                bad = bad or f"weight {name}"
    for opt in getattr(accelerator, "_optimizers", []):
        for state in opt.state.values():
            for key, v in state.items():
                if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
                    bad = bad or f"optimizer state {key}"
    flag = torch.tensor(float(bad is not None), device=accelerator.device)
    if accelerator.num_processes > 1 and accelerator.reduce(flag, "sum").item() > 0:
        bad = bad or "a tensor on another process"
    return bad


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
