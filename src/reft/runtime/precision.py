"""Compute precision: fp32 master weights, autocast for the rest, and the Accelerator."""

from __future__ import annotations

from typing import Any

import torch

from reft.errors import TrainingError, UserError


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
    return "bf16" if native_bf16() else "no"


def native_bf16() -> bool:
    """Whether the current CUDA device computes in bf16 natively (Ampere and later);
    ``torch.cuda.is_bf16_supported()`` alone also counts emulation."""
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no emulation flag: native bf16 is compute capability 8+
        return torch.cuda.get_device_capability()[0] >= 8


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
