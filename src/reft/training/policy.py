"""The model a training loop trains: loading it (fp32 masters, LoRA, checkpointing) and
saving it as a plain Hugging Face directory."""

from __future__ import annotations

from pathlib import Path

import torch

from reft.runtime.precision import fp32_trainable


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
    return trainable(model, cfg, "CAUSAL_LM"), tokenizer


def trainable(model, cfg, task_type: str):
    """``model`` made ready to train: gradient checkpointing and LoRA (peft ``task_type``)
    when ``cfg`` asks, trainable weights in float32."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          task_type=task_type, target_modules="all-linear")
        model = get_peft_model(model, lora)  # a new head (SEQ_CLS's score) is trained in full
    return fp32_trainable(model)


def hf_saver(accelerator, model, tokenizer, merge: bool = False, prepared=None):
    """A function that writes the model as a plain HF directory (LoRA merged when asked).

    Call it on every process: with sharded parameters (ZeRO-3/FSDP) the weights are
    gathered from ``prepared`` (the prepared model holding ``model``, default ``model``)
    first; the main process writes.
    """

    from reft.models.loading import quiet_saves

    @quiet_saves()  # no "Writing model shards" bar on every checkpoint
    def save(path: Path) -> None:
        from reft.runtime.checkpoint import full_state_dict

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
