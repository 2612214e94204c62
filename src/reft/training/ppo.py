"""Stage 2: ReFT — PPO with answer rewards, from the warm-up checkpoint.

One RL step (Luong et al. 2024, Sec. 3.2):
  1. sample a CoT for each question (temperature 1, no top-k/top-p)
  2. score the extracted answer: 1 correct, 0.1 wrong, 0 none
  3. per-token reward -beta*(log pi - log pi_ref), the score on the last token
  4. GAE (gamma 1, lambda 0.95), advantages whitened over the global batch
  5. ppo_epochs passes of clipped policy loss + vf_coef * clipped value loss, every forward
     with dropout off (the release's model.eval())

Losses are aggregated by ``loss_agg`` (default the release's: each response's token mean,
then the mean over responses). With N processes each takes its share of every global batch
of questions; a question's samples are seeded by (seed, step, question index), each
process's loss is weighted by its share of the global mini-batch's aggregation count
(responses or tokens) and whitening is global, so N processes train as one process with the
same global batch would.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from reft.algorithms.advantages import get_estimator
from reft.algorithms.kl import kl_per_token, sequence_kl
from reft.algorithms.logits import entropy_from_logits, logprobs_from_logits
from reft.algorithms.losses import kl_loss, policy_loss, value_loss
from reft.algorithms.stats import explained_variance, masked_mean, whiten
from reft.config import PPOConfig
from reft.configio import config_from_args
from reft.data.records import Example
from reft.errors import TrainingError, UserError
from reft.models.dropout import dropout_off
from reft.rollout.rollout import Rollout, build_rollout, response_logits
from reft.rollout.sampler import question_seed
from reft.training.common import (
    MetricsLogger,
    TrainerState,
    adamw,
    check_run_dir,
    full_state_dict,
    last_checkpoint,
    load_checkpoint,
    make_accelerator,
    prepare_engine,
    prepare_run_dir,
    require,
    save_checkpoint,
    save_final,
    setup_threads,
    shards_params,
    zero_stage,
)
from reft.training.sft import epoch_batches, hf_saver, load_policy, resolve_lr


class ActorCritic(nn.Module):
    """Policy logits and values from one forward: a value head on the policy (shared), a
    separate critic network (the paper's ablation), or no values (grpo/rloo)."""

    def __init__(self, lm: nn.Module, critic: str, value_free: bool):
        super().__init__()
        from reft.models.value_head import PolicyWithValueHead, SeparateCritic

        self.critic_kind = "none" if value_free else critic
        if self.critic_kind == "shared":
            self.body = PolicyWithValueHead(lm)
        else:
            self.body = lm
        if self.critic_kind == "separate":
            base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
            # a trainable copy: fp32 master weights even when a LoRA base is bf16
            self.critic = SeparateCritic(copy.deepcopy(base).float())

    def value_parameters(self) -> list[nn.Parameter]:
        """The value model's own parameters: the head on the policy, or the whole critic."""
        if self.critic_kind == "shared":
            return list(self.body.value_head.parameters())
        return list(self.critic.parameters()) if self.critic_kind == "separate" else []

    def forward(self, r: Rollout) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, V) response logits and (B, T) values (or None)."""
        kw = dict(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=r.position_ids)
        values = None
        if self.critic_kind == "shared":
            logits, values = self.body(**kw)
        else:
            logits = self.body(**kw).logits
            if self.critic_kind == "separate":
                values = self.critic(**kw)
        p = r.prompt_len
        return response_logits(logits, r), (values[:, p - 1 : -1] if values is not None else None)


def load_ppo_data(cfg: PPOConfig) -> tuple[list[Example], list[Example]]:
    from reft.data import load_examples

    kw = dict(data_format=cfg.data_format, columns=cfg.columns, task=cfg.task, cot=cfg.cot,
              hf_split=cfg.hf_split)
    train = load_examples(cfg.train_file, max_examples=cfg.max_examples, **kw)
    test = load_examples(cfg.test_file, max_examples=cfg.eval_examples, **kw) if cfg.test_file else []
    return train, test


@torch.no_grad()
def make_experience(ac, ref_lm, lm, tokenizer, batch: list[Example], cfg: PPOConfig, acc,
                    seeds: list[int] | None = None) -> Rollout:
    """Steps 1-2 and the forward passes: sample, score, old/ref log-probs and values.

    ``seeds``: one per question (see ``generate``), else the global torch RNG.
    """
    from reft.data.prompts import build_prompt
    from reft.eval.runner import EvalSettings, judge_texts
    from reft.rollout.sampler import generate

    prompts = [build_prompt(e.question, cot=cfg.cot, template=cfg.template) for e in batch]
    with acc.autocast():
        gens = generate(lm, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, batch_size=cfg.batch_size,
                        num_samples=cfg.samples_per_question, seeds=seeds, all_done=all_done_fn(acc))
    judged = judge_texts(gens.texts, batch, EvalSettings.from_config(cfg),
                         repeat=cfg.samples_per_question, partial=cfg.partial_reward)
    r = build_rollout(gens, tokenizer.pad_token_id, acc.device)
    r.scores = torch.tensor([j.score for j in judged], device=acc.device, dtype=torch.float)
    r.correct = torch.tensor([j.correct for j in judged], device=acc.device)
    dropout_off(ac)  # as in the update: the first PPO ratio is exactly 1
    logits, values = ac(r)
    r.old_logprobs = logprobs_from_logits(logits / cfg.temperature, r.input_ids[:, r.prompt_len:])
    r.values = values
    with acc.autocast():
        ref_logits = ref_lm(input_ids=r.input_ids, attention_mask=r.attention_mask,
                            position_ids=r.position_ids).logits
    r.ref_logprobs = logprobs_from_logits(response_logits(ref_logits, r) / cfg.temperature,
                                          r.input_ids[:, r.prompt_len:])
    return r


def compute_advantages(r: Rollout, cfg: PPOConfig, acc) -> dict[str, torch.Tensor]:
    """Steps 3-4: KL-shaped rewards, advantages (registry), global whitening."""
    mask = r.response_mask
    kl = kl_per_token(r.old_logprobs, r.ref_logprobs) * mask
    estimator = get_estimator(cfg.estimator)
    adv, ret = estimator(scores=r.scores, mask=mask, kl=kl if cfg.kl_mode == "reward" else None,
                         values=r.values, kl_coef=cfg.beta, gamma=cfg.gamma, lam=cfg.lam,
                         group_size=cfg.samples_per_question)
    if cfg.whiten_advantages:
        adv = whiten(adv, mask, all_reduce=lambda t: acc.reduce(t, "sum"))
    r.advantages, r.returns = adv, ret
    seq_kl = sequence_kl(kl, mask)
    return {"policy/kl": seq_kl.mean()}


def ppo_update(ac, opt, r: Rollout, cfg: PPOConfig, acc) -> dict[str, float]:
    """Step 5: ppo_epochs passes over shuffled mini-batches."""
    from reft.algorithms.loss_agg import agg_count, process_weight

    sums: dict[str, float] = {}
    n = 0
    dropout_off(ac)  # the release's model.eval(): rollout and update forwards agree exactly
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(len(r), device=r.input_ids.device)
        for i in range(0, len(r), cfg.mini_batch_size):
            mb = r.select(perm[i : i + cfg.mini_batch_size])
            logits, values = ac(mb)
            logits = logits / cfg.temperature
            logprobs = logprobs_from_logits(logits, mb.input_ids[:, mb.prompt_len:])
            loss, stats = policy_loss(logprobs, mb.old_logprobs, mb.advantages, mb.response_mask,
                                      cfg.clip_eps, cfg.loss_agg)
            if values is not None:
                vloss, vstats = value_loss(values, mb.values, mb.returns, mb.response_mask,
                                           cfg.value_clip, cfg.loss_agg)
                loss = loss + cfg.vf_coef * vloss
                stats.update(vstats)
            if cfg.kl_mode == "loss":
                kloss, kstats = kl_loss(logprobs, mb.ref_logprobs, mb.response_mask,
                                        loss_agg=cfg.loss_agg)
                loss = loss + cfg.beta * kloss
                stats.update(kstats)
            # every process must see a bad loss, or the others would wait in backward for ever
            n_units = agg_count(mb.response_mask, cfg.loss_agg)  # tokens or sequences
            flags = acc.reduce(torch.stack([torch.isfinite(loss.detach()).float(), n_units]), "sum")
            if flags[0].item() < acc.num_processes:
                raise TrainingError(f"non-finite loss in the PPO update ({_describe(loss, stats)})")
            # the losses are means over this process's units (tokens or sequences): weighted by
            # its share of the global mini-batch's units, DDP's gradient average is the global
            # aggregate
            acc.backward(loss * process_weight(n_units, flags[1], acc.num_processes))
            acc.clip_grad_norm_(ac.parameters(), cfg.max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            with torch.no_grad():
                stats["policy/entropy"] = masked_mean(entropy_from_logits(logits), mb.response_mask)
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    keys = sorted(sums)
    means = acc.reduce(torch.tensor([sums[k] / max(n, 1) for k in keys], device=acc.device), "mean")
    return dict(zip(keys, means.tolist(), strict=True))


def _describe(loss: torch.Tensor, stats: dict) -> str:
    parts = {"loss": loss.detach(), **{k: v for k, v in stats.items() if k.startswith("loss/")}}
    return ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())


def rollout_stats(r: Rollout, acc) -> dict[str, float]:
    mask = r.response_mask
    g = {
        "reward/mean": r.scores.float().mean(),
        "reward/accuracy": r.correct.float().mean(),
        "response/length": mask.sum(-1).mean(),
        "response/truncated_frac": r.truncated.float().mean(),
    }
    if r.values is not None:
        g["value/explained_variance"] = explained_variance(r.values, r.returns, mask)
        g["value/mean"] = masked_mean(r.values, mask)
    return {k: acc.reduce(v.detach().float(), "mean").item() for k, v in g.items()}


def periodic_eval(lm, tokenizer, test: list[Example], cfg: PPOConfig, acc) -> float:
    """Greedy top-1 on ``test``, the questions shared among the processes."""
    from reft.eval.runner import EvalSettings, evaluate_sharded

    s = EvalSettings.from_config(cfg)
    with acc.autocast():
        summary, _ = evaluate_sharded(lm, tokenizer, test, EvalSettings(**{**s.__dict__, "k": 0}),
                                      progress=False, all_done=all_done_fn(acc))
    return summary["top1"]


def all_done_fn(acc):
    """For ``generate``: with sharded parameters, whether every process has finished."""
    if not shards_params(acc):
        return None

    def all_done(local: bool) -> bool:
        return acc.reduce(torch.tensor(float(local), device=acc.device), "sum").item() == acc.num_processes

    return all_done


def train_ppo(cfg: PPOConfig, train: list[Example] | None = None,
              test: list[Example] | None = None) -> Path:
    """Run ReFT's RL stage; returns the final HF model directory."""
    require(cfg, "model", *(() if train is not None else ("train_file",)))
    if cfg.estimator != "gae" and cfg.samples_per_question < 2:
        raise UserError(f"--estimator {cfg.estimator} needs --samples-per-question >= 2")
    check_run_dir(cfg)
    setup_threads()
    acc = make_accelerator(cfg)
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        raise UserError("PPO samples with the policy outside its FSDP wrapper, which FSDP does not "
                        "allow; use DeepSpeed ZeRO-2/3 (configs/accelerate/deepspeed_zero*.yaml)")
    if cfg.critic == "separate" and cfg.estimator == "gae" and zero_stage(acc) == 3:
        raise UserError("--critic separate copies the policy's weights, which ZeRO-3 partitions "
                        "across processes; use --critic shared or DeepSpeed ZeRO-2")
    prepare_engine(acc, cfg, cfg.mini_batch_size)
    torch.manual_seed(cfg.seed)  # before the models: LoRA and value-head weights are drawn from it
    if train is None:
        train, test = load_ppo_data(cfg)
    test = test or []
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
    ref_lm = _reference(cfg, lm, acc)  # after prepare: ZeRO-3 takes the engine's filled-in config
    world, rank = acc.num_processes, acc.process_index
    per_epoch = math.ceil(len(train) / (cfg.rollout_batch_size * world))
    total = per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, per_epoch * cfg.epochs)
    state, ckpt = TrainerState(), (last_checkpoint(run_dir) if cfg.resume else None)
    if ckpt is not None:
        state = load_checkpoint(acc, ckpt)
    log = MetricsLogger(run_dir, acc.is_main_process, state.step if ckpt else None)
    saver = hf_saver(acc, lm, tokenizer, prepared=ac)
    if test and state.step == 0:
        log.log(0, {"eval/top1": periodic_eval(lm, tokenizer, test, cfg, acc)})
    bar = tqdm(total=total, initial=state.step, desc="ppo", disable=not acc.is_main_process,
               dynamic_ncols=True)
    while state.step < total:
        batches = epoch_batches(len(train), cfg.rollout_batch_size * world, cfg.seed, state.epoch)
        for gb in batches[state.batch_in_epoch :]:
            if state.step >= total:
                break
            idx = shard(gb, rank, world, cfg.rollout_batch_size)
            seeds = [question_seed(cfg.seed, state.step, j) for j in idx]
            t0 = time.perf_counter()
            r = make_experience(ac, ref_lm, lm, tokenizer, [train[j] for j in idx], cfg, acc, seeds)
            metrics = compute_advantages(r, cfg, acc)
            t1 = time.perf_counter()
            try:
                metrics.update(ppo_update(ac, opt, r, cfg, acc))
            except TrainingError as e:
                raise TrainingError(f"step {state.step + 1}: {e}; last good checkpoint kept in "
                                    f"{run_dir / 'checkpoints'}") from None
            metrics.update(rollout_stats(r, acc))
            metrics["time/rollout_s"], metrics["time/update_s"] = t1 - t0, time.perf_counter() - t1
            metrics["policy/kl"] = acc.reduce(metrics["policy/kl"].detach(), "mean").item()
            _guard(metrics, run_dir, cfg, state.step + 1)
            state.step += 1
            state.batch_in_epoch += 1
            if test and cfg.eval_every and state.step % cfg.eval_every == 0:
                metrics["eval/top1"] = periodic_eval(lm, tokenizer, test, cfg, acc)
            if state.step % cfg.log_every == 0 or state.step == total or "eval/top1" in metrics:
                log.log(state.step, metrics, epoch=state.epoch + 1)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['policy/kl']:.3f}")
            bar.update(1)
            if state.step % cfg.save_every == 0 and state.step < total:
                save_checkpoint(acc, run_dir, f"step-{state.step}", state, saver)
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    bar.close()
    if test and not (cfg.eval_every and total % cfg.eval_every == 0):
        log.log(state.step, {"eval/top1": periodic_eval(lm, tokenizer, test, cfg, acc)})
    save_checkpoint(acc, run_dir, f"step-{state.step}", state, saver)
    log.close()
    return save_final(acc, run_dir, _final_saver(acc, ac, lm, tokenizer))


def shard(gb: list[int], rank: int, world: int, n: int) -> list[int]:
    """This process's ``n`` questions of a global batch. With several processes a short last
    batch is filled cyclically, so every process runs as many mini-batches (and gradient
    all-reduces) as the others."""
    if world > 1 and len(gb) < n * world:
        gb = (gb * math.ceil(n * world / len(gb)))[: n * world]
    return gb[rank * n : (rank + 1) * n]


def _reference(cfg: PPOConfig, lm, acc):
    """The frozen warm-up model. With LoRA it is the same network with adapters disabled;
    under ZeRO-3 it is sharded like the policy."""
    if cfg.lora_r > 0:
        return _AdaptersOff(lm)
    from reft.models.loading import load_model

    # under ZeRO-3 Accelerate has from_pretrained load straight into shards (zero.Init)
    ref = load_model(cfg.model, dtype=cfg.dtype, device=None if zero_stage(acc) == 3 else acc.device)
    ref.requires_grad_(False)
    return _zero3_inference(ref, acc).eval()


def _zero3_inference(model, acc):
    """Under DeepSpeed ZeRO-3, ``model`` as an inference-only ZeRO-3 engine (no optimizer):
    its parameters stay sharded and each layer's are gathered as it runs, as TRL's
    ``prepare_deepspeed`` does for its reference model. Otherwise ``model`` unchanged."""
    if zero_stage(acc) != 3:
        return model
    import deepspeed

    ds = copy.deepcopy(acc.state.deepspeed_plugin.deepspeed_config)
    for key in ("optimizer", "scheduler"):
        ds.pop(key, None)
    hidden = model.config.hidden_size
    ds["zero_optimization"].update(reduce_bucket_size=hidden * hidden,
                                   stage3_param_persistence_threshold=10 * hidden,
                                   stage3_prefetch_bucket_size=int(0.9 * hidden * hidden))
    engine, *_ = deepspeed.initialize(model=model, config=ds)
    return engine


class _AdaptersOff:
    """Calls a peft model with its adapters disabled: the reference policy, no second copy."""

    def __init__(self, peft_model):
        self.model = peft_model

    def __call__(self, **kw):
        with self.model.disable_adapter():
            return self.model(**kw)


def _guard(metrics: dict[str, float], run_dir: Path, cfg: PPOConfig, step: int) -> None:
    # explained variance is nan by definition when the returns do not vary: not a failure
    bad = [k for k, v in metrics.items() if not math.isfinite(v) and k != "value/explained_variance"]
    if bad:
        raise TrainingError(f"step {step}: non-finite {', '.join(bad)}; last good checkpoint kept in "
                            f"{run_dir / 'checkpoints'}")
    if metrics["policy/kl"] > cfg.kl_warn:
        tqdm.write(f"warning: KL to the reference is {metrics['policy/kl']:.2f} (> --kl-warn {cfg.kl_warn})")


def _final_saver(acc, ac, lm, tokenizer):
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
            state = full_state_dict(acc, ac, critic)  # every process: may be collective
            if not acc.is_main_process:
                return
            if state is None:
                critic.save_pretrained(Path(path) / "critic")
            else:
                critic.lm.save_pretrained(Path(path) / "critic", state_dict={
                    k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")})
                _save_head({k[len("value_head."):]: v for k, v in state.items()
                            if k.startswith("value_head.")}, Path(path) / "critic")

    return save


def _save_head(state: dict, directory: Path) -> None:
    from safetensors.torch import save_file

    from reft.models.value_head import VALUE_HEAD_FILE

    save_file({k: v.detach().float().cpu().contiguous() for k, v in state.items()},
              str(directory / VALUE_HEAD_FILE))


def main(args) -> int:
    from reft.training.common import dist_state

    cfg = config_from_args(PPOConfig, args)
    final = train_ppo(cfg)
    if dist_state().is_main_process:
        print(f"PPO finished: {final}")
    return 0
