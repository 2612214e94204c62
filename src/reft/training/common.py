"""What every training loop shares: the run directory, metrics, checkpoints, Accelerate.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON
object per logged step), TensorBoard events under ``tb/``, ``checkpoints/<name>/`` (HF
model directory + Accelerate optimizer/scheduler/RNG state + ``trainer_state.json``) and
``final/`` (an HF model directory). Checkpoints and ``final/`` are written to a temporary
sibling and renamed into place, so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reft.configio import save_config
from reft.errors import TrainingError, UserError


def require(cfg: Any, *names: str) -> None:
    """Fail with a one-line message when a required setting is empty."""
    for name in names:
        if not getattr(cfg, name):
            raise UserError(f"--{name.replace('_', '-')} is required")


def resolve_mixed_precision(name: str) -> str:
    """The compute precision for ``--mixed-precision`` (``auto``, ``no``, ``bf16``, ``fp16``).

    ``auto`` is bf16 autocast on a GPU with native bf16 (Ampere and later; a GPU that only
    emulates bf16 gets ``no``) and ``no`` on CPU: there bf16 autocast pays off only for
    larger models (benchmarks/precision.py: SFT +29% tokens/s at 6.85M parameters, -41% at
    the tiny preset's 2.1M, the demo's size), so ask for ``bf16`` there explicitly. Whatever
    the setting, the weights the optimizer steps are float32 (see ``master_params``).
    """
    if name != "auto":
        return name
    from reft.models.loading import native_bf16

    return "bf16" if native_bf16() else "no"


def make_accelerator(cfg: Any, grad_accum: int = 1):
    """An Accelerator for this machine, computing under ``cfg.mixed_precision`` autocast.

    Autocast works on CPU too (bf16 on CPUs with bf16 units). Without a GPU, Accelerate
    is asked for CPU explicitly: only then do processes started by
    ``accelerate launch --multi_gpu``/``torchrun`` join one gloo process group (else each
    would train alone). Schedulers step once per optimizer step: reft counts steps
    globally, where Accelerate would step them once per process.
    """
    from accelerate import Accelerator

    mp = resolve_mixed_precision(cfg.mixed_precision)
    if mp == "fp16" and not torch.cuda.is_available():
        raise UserError("--mixed-precision fp16 needs a GPU (its loss scaler is CUDA-only); "
                        "use bf16 or no on CPU")
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mp:
        # a later stage of one process (pipeline, demo) with another precision: Accelerate
        # keeps one process-wide setting; drop it, keeping the process group
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mp, gradient_accumulation_steps=grad_accum,
                       cpu=not torch.cuda.is_available(), step_scheduler_with_optimizer=False)


def master_params(params) -> list[torch.nn.Parameter]:
    """``params`` (those that require grad), checked to be float32: AdamW on bf16 weights
    rounds away most updates at the paper's lr 3e-7, so trainable weights are always fp32
    masters and low precision lives in autocast only."""
    params = [p for p in params if p.requires_grad]
    bad = sorted({str(p.dtype) for p in params if p.dtype != torch.float32})
    if bad:
        raise TrainingError(f"trainable weights must be float32 master weights, found {', '.join(bad)}")
    return params


def fp32_trainable(model: torch.nn.Module) -> torch.nn.Module:
    """Cast ``model``'s trainable parameters to float32 in place, and return it.

    A LoRA base is frozen and keeps its dtype; peft's trainable copy of a new head (the
    reranker's score layer) takes the base's, so it is upcast here, and the modules that
    own upcast weights cast their inputs to float32 (a bf16 base feeds them bf16 hidden
    states when no autocast runs).
    """
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad and p.dtype != torch.float32]
        for p in own:
            p.data = p.data.float()
        if own:
            module.register_forward_pre_hook(_inputs_to_fp32)
    return model


def _inputs_to_fp32(module, args):
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def adamw(groups, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW over fp32 master weights: ``groups`` is parameters or param-group dicts."""
    groups = list(groups)
    if groups and isinstance(groups[0], dict):
        groups = [{**g, "params": master_params(g["params"])} for g in groups]
        groups = [g for g in groups if g["params"]]
    else:
        groups = master_params(groups)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def dist_state():
    """Accelerate's ``PartialState`` (rank, world size, device) for commands that do not
    train (eval, sample); on a machine without a GPU the processes use gloo on CPU."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def zero_stage(accelerator) -> int | None:
    """The DeepSpeed ZeRO stage of this run, None without DeepSpeed."""
    plugin = accelerator.state.deepspeed_plugin
    return None if plugin is None else plugin.zero_stage


def shards_params(accelerator) -> bool:
    """True under DeepSpeed ZeRO-3 or FSDP: no process holds the whole model, so forward
    passes and state dicts are collective (every process must take part)."""
    from accelerate.utils import DistributedType

    return zero_stage(accelerator) == 3 or accelerator.distributed_type == DistributedType.FSDP


def prepare_engine(accelerator, cfg: Any, micro_batch: int, backward_passes: int = 1) -> None:
    """What DeepSpeed needs before ``accelerator.prepare`` when no DataLoader is prepared.

    DeepSpeed's engine takes an optimizer step inside every ``backward`` (its own gradient
    accumulation aside), so a loop that sums several backward passes into one step cannot
    run under it; LoRA's merge needs the whole weights in one process.
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is not None:
        if backward_passes > 1:
            raise UserError(f"DeepSpeed steps the optimizer in every backward pass: this run needs "
                            f"{backward_passes} per step (use --grad-accum 1 and a larger --batch-size)")
        if plugin.is_auto("train_micro_batch_size_per_gpu"):
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch
    if shards_params(accelerator) and getattr(cfg, "lora_r", 0) > 0:
        raise UserError("LoRA with sharded parameters (ZeRO-3/FSDP) is not supported: the frozen "
                        "base fits on each GPU, use DDP or DeepSpeed ZeRO-2")


def default_device() -> str:
    """Where a model that is not trained through Accelerate runs: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def setup_threads() -> None:
    """Use the cores for intra-op work on CPU (torch defaults can under-use small machines):
    OMP_NUM_THREADS when set (torchrun sets it), else the cores shared among the
    processes on this machine."""
    if torch.cuda.is_available() or os.environ.get("OMP_NUM_THREADS"):
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(local, 1)))


def atomic_dir(final: Path) -> Path:
    """A fresh temporary directory beside ``final``; pass it to ``commit_dir`` when written."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))


def commit_dir(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` (old copy removed only after the new one is in place)."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, path)


class MetricsLogger:
    """metrics.jsonl + TensorBoard. Only the main process writes."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard drops the earlier run's points from that step on, as the
        # truncation above does for metrics.jsonl (else resumed steps show up twice)
        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

    def _truncate_after(self, step: int) -> None:
        """Drop lines logged after the checkpoint we resume from (they will be redone), and
        a torn last line left by a killed run."""
        keep = []
        for ln in self.path.read_text().splitlines():
            try:
                row = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("step", step + 1) <= step:
                keep.append(ln)
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, step: int, metrics: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, **extra, **{k: _num(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _num(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item()
    return v


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


class Throughput:
    """Tokens per second over the last logging window."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.tokens = 0

    def add(self, n: int) -> None:
        self.tokens += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.tokens / max(now - self.t0, 1e-9)
        self.t0, self.tokens = now, 0
        return r
