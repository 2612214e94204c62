"""Stage 1: supervised fine-tuning on (question, CoT) pairs, loss on CoT tokens only.

Used for the ReFT warm-up, the SFT baseline (continued SFT) and offline self-training.
Each process takes its own slice of every global batch; the loss is a token mean over
the global batch, so N processes and one process with the same global batch agree.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from reft.config import SFTConfig
from reft.data.records import Example
from reft.runtime.checkpoint import check_run_dir, prepare_run_dir, require
from reft.runtime.dist import prepare_engine, setup_threads
from reft.runtime.metrics import Throughput
from reft.runtime.precision import adamw, make_accelerator
from reft.training import nll
from reft.training.loop import Loop, load_train_examples, total_steps
from reft.training.policy import hf_saver, load_policy, resolve_lr


def train_sft(cfg: SFTConfig, examples: list[Example] | None = None) -> Path:
    """Run SFT; returns the path of the final HF model directory."""
    require(cfg, "model", *(() if examples is not None else ("train_file",)))
    check_run_dir(cfg)
    setup_threads()
    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)  # before load_policy: LoRA weights are drawn from it
    if examples is None:
        examples = load_train_examples(cfg, require_cot=True)
    model, tokenizer = load_policy(cfg, acc)
    # the run directory is made only once the data and model have loaded
    run_dir = prepare_run_dir(cfg, acc)
    features = nll.encode_pairs(*nll.sft_pairs(examples, cfg.cot, cfg.template), tokenizer,
                                cfg.max_length)
    global_batch = cfg.batch_size * acc.num_processes * cfg.grad_accum
    total = total_steps(len(features), global_batch, cfg.epochs)
    opt = adamw(model.parameters(), lr=resolve_lr(cfg, model, real_default=1e-5),
                weight_decay=cfg.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    prepare_engine(acc, cfg, cfg.batch_size, backward_passes=cfg.grad_accum)
    model, opt, sched = acc.prepare(model, opt, sched)
    loop = Loop(cfg, acc, run_dir, total, "sft", hf_saver(acc, model, tokenizer))
    speed = Throughput()
    model.train()
    on_epoch_end = lambda: loop.save(f"epoch-{loop.state.epoch}")  # noqa: E731
    for gb in loop.global_batches(len(features), global_batch, on_epoch_end):
        loss = _accumulate(model, features, gb, cfg, acc, speed, tokenizer.pad_token_id)
        # 3. stop before a non-finite loss reaches the weights, else clip and step
        loop.check_finite({"loss/nll": loss})
        acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        metrics, postfix = {}, None
        if loop.log_due():
            tps = speed.rate() * acc.num_processes
            metrics = {"loss/nll": loss, "optim/lr": sched.get_last_lr()[0], "perf/tokens_per_s": tps}
            postfix = {"loss": f"{loss.item():.3f}", "tok_s": f"{tps:.0f}"}
        loop.step_done(metrics, postfix=postfix)
    return loop.finish(hf_saver(acc, model, tokenizer, merge=True))


def _accumulate(model, features, gb: list[int], cfg: SFTConfig, acc, speed: Throughput,
                pad: int) -> torch.Tensor:
    """Backward passes of one global batch; returns its token-mean loss.

    1. this process's micro-batches of the global batch
    2. loss = summed token NLL / global token count (DDP averages over processes). Every
       process runs as many backward passes as the busiest one (a short last global batch
       leaves some with fewer micro-batches, or none): the extra ones have a zero loss, so
       the collectives pair up. Gradients are all-reduced once, in the last pass; the
       others accumulate locally (no_sync).
    """
    world, rank = acc.num_processes, acc.process_index
    micro = [gb[i : i + cfg.batch_size] for i in range(0, len(gb), cfg.batch_size)]
    mine = micro[rank::world]
    n_tok = sum(nll.n_targets(features[j]) for j in gb)  # the same on every process
    loss_sum = 0.0
    passes = math.ceil(len(micro) / world)
    for i in range(passes):
        real = i < len(mine)
        idx = mine[i] if real else gb[:1]
        batch = {k: v.to(acc.device) for k, v in nll.collate([features[j] for j in idx], pad).items()}
        sync = contextlib.nullcontext() if i == passes - 1 else acc.no_sync(model)
        with sync:
            loss, _ = nll.token_nll(model, batch)
            acc.backward(loss * (world / n_tok if real else 0.0))
        if real:
            loss_sum += loss.item()
            speed.add(int(batch["attention_mask"].sum()))
    return acc.reduce(torch.tensor(loss_sum, device=acc.device), "sum") / n_tok
