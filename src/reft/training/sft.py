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
from tqdm.auto import tqdm

from reft.config import SFTConfig
from reft.configio import config_from_args
from reft.data.records import Example
from reft.errors import TrainingError
from reft.training.common import (
    MetricsLogger,
    Throughput,
    TrainerState,
    adamw,
    check_run_dir,
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

IGNORE = -100


def encode_pairs(
    prompts: list[str], targets: list[str], tokenizer, max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids and labels (prompt tokens = -100) for each prompt + target + EOS.

    Prompt and target are tokenized separately so the boundary is exact and the prompt
    ids equal those seen at generation time.
    """
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for p, t in zip(p_ids, t_ids, strict=True):
        ids = (p + t + [eos])[:max_length]
        labels = ([IGNORE] * len(p) + t + [eos])[:max_length]
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded pairs into (B, T) tensors."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.tensor(f["input_ids"])
        labels[i, :n] = torch.tensor(f["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def token_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over labelled (CoT) tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    logits = logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return nll, (labels != IGNORE).sum()


def epoch_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled global batches of example indices, fixed by (seed, epoch) so resume is exact."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + global_batch] for i in range(0, n, global_batch)]


def sft_pairs(examples: list[Example], cot: str, template: str) -> tuple[list[str], list[str]]:
    from reft.data.prompts import build_prompt, build_target

    prompts = [build_prompt(e.question, cot=cot, template=template) for e in examples]
    targets = [build_target(e, cot=cot) for e in examples]
    return prompts, targets


def resolve_lr(cfg, model, real_default: float) -> float:
    """--lr, else the paper's value for real models, else the tiny-model default."""
    from reft.models.loading import is_reft_tiny

    if cfg.lr is not None:
        return cfg.lr
    return cfg.tiny_lr if is_reft_tiny(model) else real_default


def load_policy(cfg, accelerator):
    """Model + tokenizer for training, with LoRA and gradient checkpointing when asked."""
    from reft.models.loading import ensure_pad_token, load_model, load_tokenizer, token_ids

    tokenizer = ensure_pad_token(load_tokenizer(cfg.model, **token_ids(cfg)))
    # trainable weights are fp32 masters (compute precision is --mixed-precision); a LoRA
    # base is frozen and stays in --dtype
    model = load_model(cfg.model, dtype=cfg.dtype if cfg.lora_r > 0 else "float32",
                       device=accelerator.device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          task_type="CAUSAL_LM", target_modules="all-linear")
        model = get_peft_model(model, lora)
    return fp32_trainable(model), tokenizer


def hf_saver(accelerator, model, tokenizer, merge: bool = False, prepared=None):
    """A function that writes the model as a plain HF directory (LoRA merged when asked).

    Call it on every process: with sharded parameters (ZeRO-3/FSDP) the weights are
    gathered from ``prepared`` (the prepared model holding ``model``, default ``model``)
    first; the main process writes.
    """

    def save(path: Path) -> None:
        from reft.training.common import full_state_dict

        m = accelerator.unwrap_model(model)
        state = full_state_dict(accelerator, prepared if prepared is not None else model, m)
        if not accelerator.is_main_process:
            return
        if merge and hasattr(m, "merge_and_unload"):
            # in fp32: peft adds the LoRA delta in the base weights' dtype, and a small RL
            # delta rounds away in a bf16 merge; on CPU, where an fp32 copy of the base fits
            m = m.to("cpu", torch.float32).merge_and_unload()
        elif hasattr(m, "peft_config") and not merge:
            m.save_pretrained(path)  # adapter only, for checkpoints
            tokenizer.save_pretrained(path)
            return
        m.save_pretrained(path, safe_serialization=True, state_dict=state)
        tokenizer.save_pretrained(path)

    return save


def train_sft(cfg: SFTConfig, examples: list[Example] | None = None) -> Path:
    """Run SFT; returns the path of the final HF model directory."""
    require(cfg, "model", *(() if examples is not None else ("train_file",)))
    check_run_dir(cfg)
    setup_threads()
    accelerator = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)  # before load_policy: LoRA weights are drawn from it
    if examples is None:
        from reft.data import load_examples

        examples = load_examples(cfg.train_file, data_format=cfg.data_format, columns=cfg.columns,
                                 task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                                 max_examples=cfg.max_examples, require_cot=True)
    model, tokenizer = load_policy(cfg, accelerator)
    # the run directory is made only once the data and model have loaded
    run_dir = prepare_run_dir(cfg, accelerator)
    features = encode_pairs(*sft_pairs(examples, cfg.cot, cfg.template), tokenizer, cfg.max_length)
    n_labels = [sum(x != IGNORE for x in f["labels"][1:]) for f in features]
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = cfg.batch_size * world * cfg.grad_accum
    steps_per_epoch = math.ceil(len(features) / global_batch)
    total = steps_per_epoch * cfg.epochs
    lr = resolve_lr(cfg, model, real_default=1e-5)
    opt = adamw(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    from transformers import get_linear_schedule_with_warmup

    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    prepare_engine(accelerator, cfg, cfg.batch_size, backward_passes=cfg.grad_accum)
    model, opt, sched = accelerator.prepare(model, opt, sched)
    state = TrainerState()
    ckpt = last_checkpoint(run_dir) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(accelerator, ckpt)
    log = MetricsLogger(run_dir, accelerator.is_main_process, state.step if ckpt else None)
    saver = hf_saver(accelerator, model, tokenizer)
    bar = tqdm(total=total, initial=state.step, desc="sft", disable=not accelerator.is_main_process,
               dynamic_ncols=True)
    speed, pad = Throughput(), tokenizer.pad_token_id
    model.train()
    for epoch in range(state.epoch, cfg.epochs):
        for gb in epoch_batches(len(features), global_batch, cfg.seed, epoch):
            # 1. this process's micro-batches of the global batch
            micro = [gb[i : i + cfg.batch_size] for i in range(0, len(gb), cfg.batch_size)]
            mine = micro[rank::world]
            n_tok = sum(n_labels[j] for j in gb)  # the same on every process
            loss_sum = 0.0
            # 2. loss = summed token NLL / global token count (DDP averages over processes).
            #    Every process runs as many backward passes as the busiest one (a short last
            #    global batch leaves some with fewer micro-batches, or none): the extra ones
            #    have a zero loss, so the collectives pair up. Gradients are all-reduced once,
            #    in the last pass; the others accumulate locally (no_sync).
            passes = math.ceil(len(micro) / world)
            for i in range(passes):
                real = i < len(mine)
                idx = mine[i] if real else gb[:1]
                batch = {k: v.to(accelerator.device) for k, v in collate([features[j] for j in idx], pad).items()}
                sync = contextlib.nullcontext() if i == passes - 1 else accelerator.no_sync(model)
                with sync:
                    nll, _ = token_nll(model, batch)
                    accelerator.backward(nll * (world / n_tok if real else 0.0))
                if real:
                    loss_sum += nll.item()
                    speed.add(int(batch["attention_mask"].sum()))
            # 3. stop before a non-finite loss reaches the weights, else clip and step
            loss = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), "sum") / n_tok
            if not torch.isfinite(loss):
                raise TrainingError(f"step {state.step + 1}: loss is {loss.item()}; last good "
                                    f"checkpoint kept in {run_dir / 'checkpoints'}")
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            state.step += 1
            if state.step % cfg.log_every == 0 or state.step == total:
                tps = speed.rate() * world
                log.log(state.step, {"loss": loss, "lr": sched.get_last_lr()[0], "tokens_per_s": tps},
                        epoch=epoch + 1)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tps:.0f}")
            bar.update(1)
        state.epoch, state.batch_in_epoch = epoch + 1, 0
        save_checkpoint(accelerator, run_dir, f"epoch-{epoch + 1}", state, saver)
    bar.close()
    log.close()
    return save_final(accelerator, run_dir, hf_saver(accelerator, model, tokenizer, merge=True))


def main(args) -> int:
    from reft.training.common import dist_state

    cfg = config_from_args(SFTConfig, args)
    final = train_sft(cfg)
    if dist_state().is_main_process:
        print(f"SFT finished: {final}")
    return 0
