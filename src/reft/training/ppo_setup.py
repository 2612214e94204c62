"""Everything a PPO run holds before its first step: checks, models, optimizer, savers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reft.config import PPOConfig
from reft.data.records import Example
from reft.errors import UserError
from reft.models.actor_critic import ActorCritic
from reft.runtime.checkpoint import check_run_dir, full_state_dict, prepare_run_dir, require
from reft.runtime.dist import prepare_engine, setup_threads, zero_stage
from reft.runtime.precision import adamw, make_accelerator
from reft.training.loop import load_train_examples, total_steps
from reft.training.policy import hf_saver, load_policy, resolve_lr
from reft.training.reference import reference_model


@dataclass
class PPORun:
    """The pieces of a PPO run (models prepared by Accelerate)."""

    cfg: PPOConfig
    acc: Any
    train: list[Example]
    test: list[Example]
    lm: Any
    """The policy LM (inside ``ac``), which samples."""
    tokenizer: Any
    ac: Any
    """The prepared ``ActorCritic``."""
    opt: Any
    ref: Any
    """The frozen reference policy."""
    run_dir: Path
    total: int
    saver: Any
    """Writes a checkpoint's model."""
    final_saver: Any
    """Writes ``final/``: merged policy + value head (+ critic)."""
    pack_checked: bool = False
    """``--pack``: the model was seen to keep packed sequences apart (``check_packing``)."""

    @property
    def critic(self) -> str:
        """The value model: shared, separate or none (``ActorCritic.critic_kind``)."""
        return self.acc.unwrap_model(self.ac).critic_kind


def check_ppo(cfg: PPOConfig, acc) -> None:
    """What this run cannot do here, before anything slow."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        raise UserError("PPO samples with the policy outside its FSDP wrapper, which FSDP does not "
                        "allow; use DeepSpeed ZeRO-2/3 (configs/accelerate/deepspeed_zero*.yaml)")
    if cfg.critic == "separate" and cfg.estimator == "gae" and zero_stage(acc) == 3:
        raise UserError("--critic separate copies the policy's weights, which ZeRO-3 partitions "
                        "across processes; use --critic shared or DeepSpeed ZeRO-2")


def setup_ppo(cfg: PPOConfig, train: list[Example] | None, test: list[Example] | None) -> PPORun:
    """Load data and models, build the optimizer, make the run directory."""
    require(cfg, "model", *(() if train is not None else ("train_file",)))
    if cfg.estimator != "gae" and cfg.samples_per_question < 2:
        raise UserError(f"--estimator {cfg.estimator} needs --samples-per-question >= 2")
    check_run_dir(cfg)
    setup_threads()
    acc = make_accelerator(cfg)
    check_ppo(cfg, acc)
    prepare_engine(acc, cfg, cfg.mini_batch_size)
    torch.manual_seed(cfg.seed)  # before the models: LoRA and value-head weights are drawn from it
    if train is None:
        from reft.data import load_examples

        train = load_train_examples(cfg)
        test = load_examples(cfg.val_file, data_format=cfg.data_format, columns=cfg.columns,
                             task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                             max_examples=cfg.eval_examples) if cfg.val_file else []
    lm, tokenizer = load_policy(cfg, acc)
    ac = ActorCritic(lm, cfg.critic, value_free=cfg.estimator != "gae").to(acc.device)
    # the run directory is made only once the data and models have loaded
    run_dir = prepare_run_dir(cfg, acc)
    lr = resolve_lr(cfg, lm, real_default=3e-7)
    value_ids = {id(p) for p in ac.value_parameters()}
    trainable = [p for p in ac.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in value_ids]},
              {"params": [p for p in trainable if id(p) in value_ids], "lr": cfg.value_lr or lr}]
    opt = adamw(groups, lr=lr, weight_decay=cfg.weight_decay)
    ac, opt = acc.prepare(ac, opt)
    ref = reference_model(cfg, lm, acc)  # after prepare: ZeRO-3 takes the engine's filled-in config
    total = total_steps(len(train), cfg.rollout_batch_size * acc.num_processes, cfg.epochs,
                        cfg.max_steps)
    return PPORun(cfg, acc, train, test or [], lm, tokenizer, ac, opt, ref, run_dir, total,
                  hf_saver(acc, lm, tokenizer, prepared=ac), final_saver(acc, ac, lm, tokenizer))


def final_saver(acc, ac, lm, tokenizer):
    """The merged policy as a plain HF directory, with the shared value head beside its
    weights as ``value_head.safetensors`` (the layout ``PolicyWithValueHead.from_pretrained``
    reads; ``AutoModelForCausalLM`` ignores the extra file). A separate critic goes to
    ``critic/`` inside it, in the layout ``SeparateCritic.from_pretrained`` reads."""
    save_policy = hf_saver(acc, lm, tokenizer, merge=True, prepared=ac)

    def save(path: Path) -> None:
        save_policy(path)
        body = acc.unwrap_model(ac).body
        if hasattr(body, "value_head"):
            state = full_state_dict(acc, ac, body.value_head)  # every process: may be collective
            if not acc.is_main_process:
                return
            _save_head(state if state is not None else body.value_head.state_dict(), Path(path))
        critic = getattr(acc.unwrap_model(ac), "critic", None)
        if critic is not None:
            _save_critic(acc, ac, critic, Path(path) / "critic")

    return save


def _save_critic(acc, ac, critic, directory: Path) -> None:
    from reft.models.loading import quiet_saves

    state = full_state_dict(acc, ac, critic)  # every process: may be collective
    if not acc.is_main_process:
        return
    if state is None:
        critic.save_pretrained(directory)  # quiet itself
    else:
        with quiet_saves():
            critic.lm.save_pretrained(directory, state_dict={
                k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")})
        _save_head({k[len("value_head."):]: v for k, v in state.items()
                    if k.startswith("value_head.")}, directory)


def _save_head(state: dict, directory: Path) -> None:
    from safetensors.torch import save_file

    from reft.models.value_head import VALUE_HEAD_FILE

    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()},
              str(directory / VALUE_HEAD_FILE))
