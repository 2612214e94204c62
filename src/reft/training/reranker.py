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
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from reft.config import PROMPT_TEMPLATE, RerankerConfig
from reft.configio import config_from_args
from reft.errors import TrainingError, UserError
from reft.training.common import (
    MetricsLogger,
    TrainerState,
    adamw,
    default_device,
    fp32_trainable,
    last_checkpoint,
    load_checkpoint,
    make_accelerator,
    prepare_engine,
    prepare_run_dir,
    require,
    save_checkpoint,
    save_final,
    setup_threads,
)
from reft.training.sft import epoch_batches, hf_saver, resolve_lr

MAX_LENGTH_KEY = "reft_reranker_max_length"
"""Extra ``config.json`` key: the truncation length the classifier was trained with."""


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


def encode_scored(prompts: list[str], completions: list[str], tokenizer, max_length: int
                  ) -> list[list[int]]:
    """Token ids of each ``prompt + completion + eos``, the same split as SFT and sampling.

    Too-long inputs keep their last ``max_length`` tokens: the end of a solution (its
    final steps and answer) is what decides correctness.
    """
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p + c + [eos])[-max_length:] for p, c in zip(p_ids, c_ids, strict=True)]


def right_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids and attention mask, padded on the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def sequence_logits(model, rows: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """(B,) float32 logits of P(correct) for a batch of encoded sequences."""
    ids, mask = right_pad(rows, pad_id)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
    return out.logits.squeeze(-1).float()


def load_classifier(name_or_path: str | Path, dtype: str = "auto", device=None):
    """``AutoModelForSequenceClassification`` with one output; a causal LM gets a new score head."""
    from transformers import AutoModelForSequenceClassification

    from reft.models.loading import _load, resolve_dtype

    def from_pretrained(source: str, **kwargs: Any):
        return AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, **kwargs)

    model = _load("model", from_pretrained, name_or_path, ("config.json",),
                  dtype=resolve_dtype(dtype, device))
    if device is not None:
        model.to(device)
    return model


@dataclass
class Reranker:
    """A trained classifier and its tokenizer; ``score`` is the ``rerank_fn`` of evaluation."""

    model: Any
    tokenizer: Any
    max_length: int = 512
    batch_size: int = 32

    @classmethod
    def load(cls, path: str | Path, dtype: str = "auto", device=None, batch_size: int = 32) -> Reranker:
        """From ``OUT/final`` of ``reft reranker train`` (or ``OUT`` itself)."""
        from reft.models.loading import load_tokenizer

        path = Path(path)
        if (path / "final" / "config.json").is_file():
            path = path / "final"
        config_file = path / "config.json"
        if config_file.is_file() and MAX_LENGTH_KEY not in json.loads(config_file.read_text()):
            raise UserError(f"{path} is not a reranker (train one with 'reft reranker train')")
        if device is None:
            device = default_device()
        model = load_classifier(path, dtype=dtype, device=device).eval()
        tokenizer = load_tokenizer(path)
        return cls(model, tokenizer, getattr(model.config, MAX_LENGTH_KEY, 512), batch_size)

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """P(correct) of each (prompt, completion), in the order given."""
        rows = encode_scored(prompts, completions, self.tokenizer, self.max_length)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # little padding per batch
        probs = [0.0] * len(rows)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            logits = sequence_logits(self.model, [rows[j] for j in idx], self.tokenizer.pad_token_id, device)
            for j, p in zip(idx, torch.sigmoid(logits).tolist(), strict=True):
                probs[j] = p
        self.model.train(was_training)
        return probs


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
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          task_type="SEQ_CLS", target_modules="all-linear")
        model = get_peft_model(model, lora)  # the new score head is trained in full
    return fp32_trainable(model), tokenizer


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
    accelerator = make_accelerator(cfg)
    # DeepSpeed: the micro-batch (no DataLoader is prepared); LoRA with ZeRO-3 refused
    prepare_engine(accelerator, cfg, cfg.batch_size)
    run_dir = prepare_run_dir(cfg, accelerator)
    torch.manual_seed(cfg.seed)
    model, tokenizer = _load_for_training(cfg, accelerator)
    rows = encode_scored(prompts, completions, tokenizer, cfg.max_length)
    if accelerator.is_main_process:
        print(f"reranker: {len(rows)} samples, {positive_frac:.1%} correct; new score head on {cfg.model}")
        if positive_frac in (0.0, 1.0):
            print("reranker: warning: every sample has the same label, so the scores cannot rank")
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = cfg.batch_size * world
    total = math.ceil(len(rows) / global_batch) * cfg.epochs
    opt = adamw(model.parameters(), lr=resolve_lr(cfg, model, real_default=1e-5),
                weight_decay=cfg.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    state = TrainerState()
    ckpt = last_checkpoint(run_dir) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(accelerator, ckpt)
    log = MetricsLogger(run_dir, accelerator.is_main_process, state.step if ckpt else None)
    saver = hf_saver(accelerator, model, tokenizer)
    bar = tqdm(total=total, initial=state.step, desc="reranker", dynamic_ncols=True,
               disable=not accelerator.is_main_process)
    target = torch.tensor(labels)
    window = torch.zeros(3, device=accelerator.device)  # summed loss, right answers, samples
    model.train()
    for epoch in range(state.epoch, cfg.epochs):
        for gb in epoch_batches(len(rows), global_batch, cfg.seed, epoch):
            # 1. this process's slice; one without data joins the all-reduce with a zero loss
            mine = gb[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]
            idx = mine or gb[:1]
            logits = sequence_logits(model, [rows[j] for j in idx], tokenizer.pad_token_id,
                                     accelerator.device)
            y = target[idx].to(logits.device)
            # 2. BCE summed here, divided by the global batch (DDP averages over processes)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
            accelerator.backward(bce * (world / len(gb) if mine else 0.0))
            if mine:
                window += torch.stack([bce.detach(), ((logits.detach() > 0) == (y > 0.5)).sum(),
                                       torch.tensor(float(len(mine)), device=logits.device)])
            # 3. clip, step
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % cfg.log_every == 0 or state.step == total:
                loss_sum, right, n = accelerator.reduce(window, "sum").tolist()
                window.zero_()
                if not math.isfinite(loss_sum):
                    raise TrainingError(f"non-finite reranker loss at step {state.step}; "
                                        f"last checkpoint: {last_checkpoint(run_dir) or 'none'}")
                log.log(state.step, {"loss": loss_sum / n, "accuracy": right / n,
                                     "data/positive_frac": positive_frac, "lr": sched.get_last_lr()[0]},
                        epoch=epoch + 1)
                bar.set_postfix(loss=f"{loss_sum / n:.3f}", acc=f"{right / n:.2f}")
            bar.update(1)
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        save_checkpoint(accelerator, run_dir, f"epoch-{epoch + 1}", state, saver)
    bar.close()
    log.close()
    return save_final(accelerator, run_dir, hf_saver(accelerator, model, tokenizer, merge=True))


def main(args) -> int:
    cfg = config_from_args(RerankerConfig, args)
    final = train_reranker(cfg)
    print(f"reranker finished: {final}")
    return 0
