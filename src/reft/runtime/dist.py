"""Processes and devices: rank and world size, threads, sharded engines."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from reft.errors import UserError


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


def all_done_fn(acc):
    """For ``generate``: with sharded parameters, whether every process has finished."""
    if not shards_params(acc):
        return None

    def all_done(local: bool) -> bool:
        return acc.reduce(torch.tensor(float(local), device=acc.device), "sum").item() == acc.num_processes

    return all_done


def shard(gb: list[int], rank: int, world: int, n: int) -> list[int]:
    """This process's ``n`` questions of a global batch. With several processes a short last
    batch is filled cyclically, so every process runs as many mini-batches (and gradient
    all-reduces) as the others."""
    if world > 1 and len(gb) < n * world:
        gb = (gb * math.ceil(n * world / len(gb)))[: n * world]
    return gb[rank * n : (rank + 1) * n]
