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
from reft.errors import UserError
from reft.runtime.checkpoint import check_run_dir, prepare_run_dir, require
from reft.runtime.dist import prepare_engine, setup_threads
from reft.runtime.metrics import Throughput
from reft.runtime.precision import adamw, make_accelerator
from reft.training import nll
from reft.training.loop import Loop, load_train_examples, total_steps
from reft.training.policy import hf_saver, load_policy, resolve_lr


def train_sft(cfg: SFTConfig, examples: list[Example] | None = None, run_cfg=None) -> Path:
    """Run SFT; returns the path of the final HF model directory. ``run_cfg``: the config
    the run's checkpoints record and ``--resume`` checks (default ``cfg``; offline
    self-training passes its own)."""
    require(cfg, "model", *(() if examples is not None else ("train_file",)))
    check_run_dir(cfg, run_cfg)
    setup_threads()
    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)  # before load_policy: LoRA weights are drawn from it
    if examples is None:
        examples = load_train_examples(cfg, require_cot=True)
    model, tokenizer = load_policy(cfg, acc)
    features = encode_examples(examples, tokenizer, cfg, acc.is_main_process)
    # the run directory is made only once the data and model have loaded and fit --max-length
    run_dir = prepare_run_dir(cfg, acc, run_cfg)
    global_batch = cfg.batch_size * acc.num_processes * cfg.grad_accum
    total = total_steps(len(features), global_batch, cfg.epochs, cfg.max_steps)
    opt = adamw(model.parameters(), lr=resolve_lr(cfg, model, real_default=1e-5),
                weight_decay=cfg.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    prepare_engine(acc, cfg, cfg.batch_size, backward_passes=cfg.grad_accum)
    model, opt, sched = acc.prepare(model, opt, sched)
    with Loop(cfg, acc, run_dir, total, "sft", hf_saver(acc, model, tokenizer), module=model,
              run_cfg=run_cfg, epoch_saves=True) as loop:
        speed = Throughput()
        model.train()
        for gb in loop.global_batches(len(features), global_batch):
            loss = _accumulate(model, features, gb, cfg, acc, speed, tokenizer.pad_token_id)
            # 3. clip and step; a step whose gradients (or loss) are not finite is skipped
            loop.apply_update(model.parameters(), opt, sched, detail=f"loss/nll={float(loss):.4g}")
            metrics, postfix = {}, None
            if loop.log_due():
                tps = speed.rate() * acc.num_processes
                metrics = {"loss/nll": loss, "optim/lr": sched.get_last_lr()[0],
                           "perf/tokens_per_s": tps}
                postfix = {"loss": f"{loss.item():.3f}", "tok_s": f"{tps:.0f}"}
            loop.step_done(metrics, postfix=postfix)
        return loop.finish(hf_saver(acc, model, tokenizer, merge=True))


def encode_examples(examples: list[Example], tokenizer, cfg: SFTConfig,
                    report: bool = True, label: str = "sft") -> list[dict[str, list[int]]]:
    """The examples as token ids and labels (see ``nll.encode_pairs``), without those whose
    prompt leaves no CoT token within ``--max-length`` (nothing to learn from; ``report``:
    say how many). A one-line UserError naming --max-length when that is every one."""
    prompts, targets = nll.sft_pairs(examples, cfg.cot, cfg.template)
    with _no_length_warning(tokenizer, cfg.max_length):
        features = nll.encode_pairs(prompts, targets, tokenizer, cfg.max_length)
    kept = [f for f in features if nll.n_targets(f) > 0]
    if len(kept) == len(features):
        return features
    with _no_length_warning(tokenizer, cfg.max_length):
        longest = max(len(ids) for ids in tokenizer(prompts, add_special_tokens=True)["input_ids"])
    where = f"--max-length {cfg.max_length}"
    if not kept:
        raise UserError(f"{where}: no room for the chain of thought: every prompt fills it "
                        f"(the longest is {longest} tokens); raise --max-length or shorten --template")
    if report:
        print(f"{label}: warning: {len(features) - len(kept)} of {len(features)} examples skipped: their "
              f"prompt fills {where} (the longest is {longest} tokens)")
    return kept


@contextlib.contextmanager
def _no_length_warning(tokenizer, max_length: int):
    """Without transformers' "Token indices sequence length is longer than the specified
    maximum" warning while tokenizing, when ``max_length`` fits the model: the pairs are cut
    to it, so the warning would only be a stray line on stderr."""
    if max_length > (getattr(tokenizer, "model_max_length", None) or 0):
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


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
