"""Reward-model reranking, the inference-time boost the ReFT paper compares with voting.

A sequence classifier, initialised from a causal-LM checkpoint (the SFT or ReFT model),
learns P(correct | question, CoT) from sampled solutions that the answer checker
labelled, with a binary cross-entropy loss. At evaluation it scores the k samples of
each question and the highest-scoring one is the answer (rerank@k).

The score is read at the last non-pad token of ``prompt + completion + eos``. Batches
are padded on the right, where Hugging Face's ``*ForSequenceClassification`` takes the
rightmost token that is not ``pad_token_id``: the eos when pad and eos differ, the last
completion token when the tokenizer pads with eos. Either way training and scoring
read the same position.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reft.config import PROMPT_TEMPLATE, RerankerConfig
from reft.errors import UserError
from reft.models.reranker import (
    MAX_LENGTH_KEY,
    encode_scored,
    load_classifier,
    sequence_logits,
)
from reft.runtime.checkpoint import prepare_run_dir, require
from reft.runtime.dist import prepare_engine, setup_threads
from reft.runtime.precision import adamw, make_accelerator
from reft.training.loop import Loop, total_steps
from reft.training.policy import hf_saver, resolve_lr, trainable


def read_samples(path: str | Path) -> list[dict]:
    """The records of a ``reft sample`` JSON-lines file (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--samples {path}: no such file (write one with 'reft sample')")
    lines = path.read_text().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec["question"], str) or not all(
                    isinstance(s["completion"], str) and "correct" in s for s in rec["samples"]):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            if n == len(lines):  # an interrupted 'reft sample' may leave a torn last line
                break
            raise UserError(f"{path}: line {n}: not a 'reft sample' record") from None
        records.append(rec)
    return records


def labelled_texts(records: list[dict], cot: str = "nl", template: str = PROMPT_TEMPLATE
                   ) -> tuple[list[str], list[str], list[float]]:
    """(prompts, completions, labels): one row per sample, label 1.0 correct, 0.0 not."""
    from reft.data.prompts import build_prompt

    prompts, completions, labels = [], [], []
    for rec in records:
        prompt = build_prompt(rec["question"], cot=cot, template=template)
        for s in rec["samples"]:
            prompts.append(prompt)
            completions.append(s["completion"])
            labels.append(1.0 if s["correct"] else 0.0)
    return prompts, completions, labels


def _load_for_training(cfg: RerankerConfig, accelerator):
    from transformers.utils import logging as hf_logging

    from reft.models.loading import load_tokenizer, token_ids

    tokenizer = load_tokenizer(cfg.model, **token_ids(cfg))  # pad filled in when missing
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the expected "lm_head unused, score new" load report
    try:
        # trainable weights are fp32 masters; a LoRA base is frozen and stays in --dtype
        model = load_classifier(cfg.model, dtype=cfg.dtype if cfg.lora_r > 0 else "float32",
                                device=accelerator.device)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id
    setattr(model.config, MAX_LENGTH_KEY, cfg.max_length)
    return trainable(model, cfg, "SEQ_CLS"), tokenizer


def train_reranker(cfg: RerankerConfig, records: list[dict] | None = None) -> Path:
    """Fine-tune the classifier with BCE on correct/incorrect samples; returns OUT/final."""
    require(cfg, "model", *(() if records is not None else ("samples",)))
    if records is None:
        records = read_samples(cfg.samples)
    prompts, completions, labels = labelled_texts(records, cfg.cot, cfg.template)
    if not labels:
        raise UserError(f"{cfg.samples or 'records'}: no samples to train on")
    positive_frac = sum(labels) / len(labels)
    setup_threads()
    acc = make_accelerator(cfg)
    # DeepSpeed: the micro-batch (no DataLoader is prepared); LoRA with ZeRO-3 refused
    prepare_engine(acc, cfg, cfg.batch_size)
    run_dir = prepare_run_dir(cfg, acc)
    torch.manual_seed(cfg.seed)
    model, tokenizer = _load_for_training(cfg, acc)
    rows = encode_scored(prompts, completions, tokenizer, cfg.max_length)
    if acc.is_main_process:
        print(f"reranker: {len(rows)} samples, {positive_frac:.1%} correct; new score head on {cfg.model}")
        if positive_frac in (0.0, 1.0):
            print("reranker: warning: every sample has the same label, so the scores cannot rank")
    global_batch = cfg.batch_size * acc.num_processes
    total = total_steps(len(rows), global_batch, cfg.epochs, cfg.max_steps)
    opt = adamw(model.parameters(), lr=resolve_lr(cfg, model, real_default=1e-5),
                weight_decay=cfg.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    model, opt, sched = acc.prepare(model, opt, sched)
    target = torch.tensor(labels)
    window = torch.zeros(3, device=acc.device)  # summed loss, right answers, samples
    model.train()
    with Loop(cfg, acc, run_dir, total, "reranker", hf_saver(acc, model, tokenizer), module=model,
              epoch_saves=True) as loop:
        for gb in loop.global_batches(len(rows), global_batch):
            window += _bce_step(model, opt, sched, rows, target, gb, cfg, acc,
                                tokenizer.pad_token_id, loop)
            metrics, postfix = {}, None
            if loop.log_due():
                loss_sum, right, n = acc.reduce(window, "sum").tolist()
                window.zero_()
                metrics = {"loss/bce": loss_sum / n, "train/accuracy": right / n,
                           "data/positive_frac": positive_frac, "optim/lr": sched.get_last_lr()[0]}
                postfix = {"loss": f"{loss_sum / n:.3f}", "acc": f"{right / n:.2f}"}
            loop.step_done(metrics, postfix=postfix)
        return loop.finish(hf_saver(acc, model, tokenizer, merge=True))


def _bce_step(model, opt, sched, rows, target, gb: list[int], cfg: RerankerConfig, acc,
              pad: int, loop: Loop) -> torch.Tensor:
    """One optimizer step on a global batch; this process's (summed loss, right, samples)."""
    world, rank = acc.num_processes, acc.process_index
    # 1. this process's slice; one without data joins the all-reduce with a zero loss
    mine = gb[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]
    idx = mine or gb[:1]
    logits = sequence_logits(model, [rows[j] for j in idx], pad, acc.device)
    y = target[idx].to(logits.device)
    # 2. BCE summed here, divided by the global batch (DDP averages over processes)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
    acc.backward(bce * (world / len(gb) if mine else 0.0))
    # 3. clip, step (a step whose gradients are not finite is skipped)
    loop.apply_update(model.parameters(), opt, sched)
    if not mine:
        return torch.zeros(3, device=acc.device)
    return torch.stack([bce.detach(), ((logits.detach() > 0) == (y > 0.5)).sum(),
                        torch.tensor(float(len(mine)), device=logits.device)])
