"""Stage 2: ReFT — PPO with answer rewards, from the warm-up checkpoint.

One RL step (Luong et al. 2024, Sec. 3.2), as ``train_ppo`` numbers it:
  1. sample a CoT for each question (temperature 1, no top-k/top-p)
  2. score the extracted answer: 1 correct, 0.1 wrong, 0 none
  3. forward passes: old and reference log-probs, values (dropout off)
  4. per-token reward -beta*(log pi - log pi_ref), the score on the last token; GAE
     (gamma 1, lambda 0.95), advantages whitened over the global batch
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

import contextlib
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reft.algorithms.advantages import get_estimator
from reft.algorithms.kl import kl_per_token, sequence_kl
from reft.algorithms.logits import entropy_from_logits, logprobs_from_logits
from reft.algorithms.loss_agg import agg_count, process_weight
from reft.algorithms.losses import kl_loss, policy_loss, value_loss
from reft.algorithms.stats import explained_variance, masked_mean, whiten
from reft.config import PPOConfig
from reft.data.records import Example
from reft.errors import TrainingError
from reft.models.actor_critic import lm_response_logits
from reft.models.dropout import dropout_off
from reft.rollout.rollout import Experience, Sequences, build_sequences
from reft.rollout.sample import Scored, sample_and_score
from reft.rollout.sampler import question_seed
from reft.runtime.dist import all_done_fn, shard, shards_params
from reft.training.loop import Loop
from reft.training.ppo_packing import check_packing, forward_inputs
from reft.training.ppo_setup import PPORun, setup_ppo


def train_ppo(cfg: PPOConfig, train: list[Example] | None = None,
              test: list[Example] | None = None) -> Path:
    """Run ReFT's RL stage; returns the final HF model directory."""
    run = setup_ppo(cfg, train, test)
    with Loop(cfg, run.acc, run.run_dir, run.total, "ppo", run.saver, module=run.lm) as loop:
        if run.test and loop.step == 0:
            loop.log.log(0, {"eval/top1": periodic_eval(run)})
        for gb in loop.global_batches(len(run.train), cfg.rollout_batch_size * run.acc.num_processes):
            metrics = ppo_step(run, loop, gb)
            due = run.test and cfg.eval_every and (loop.step + 1) % cfg.eval_every == 0
            if due:
                metrics["eval/top1"] = periodic_eval(run)
            loop.step_done(metrics, log=loop.log_due() or bool(due),
                           postfix={"reward": f"{metrics['reward/mean']:.3f}",
                                    "kl": f"{metrics['policy/kl']:.3f}"})
        if run.test and not (cfg.eval_every and run.total % cfg.eval_every == 0):
            loop.log.log(loop.step, {"eval/top1": periodic_eval(run)})
        loop.checkpoint()
        return loop.finish(run.final_saver)


def ppo_step(run: PPORun, loop: Loop, gb: list[int]) -> dict[str, float]:
    """Steps 1-5 on the global batch of questions ``gb``; the step's metrics, checked
    (``guard``)."""
    cfg, acc = run.cfg, run.acc
    world, rank = acc.num_processes, acc.process_index
    idx = shard(gb, rank, world, cfg.rollout_batch_size)
    seeds = [question_seed(cfg.seed, loop.step, j) for j in idx]
    batch = [run.train[j] for j in idx]
    with acc.autocast():  # 1.-2. sample and score
        scored = sample_and_score(run.lm, run.tokenizer, batch, cfg,
                                  num_samples=cfg.samples_per_question, seeds=seeds,
                                  all_done=all_done_fn(acc), partial=cfg.partial_reward,
                                  return_logprobs=cfg.sampler_logprobs,
                                  return_hidden=cfg.sampler_logprobs and run.critic == "shared")
    loop.record(sample=scored.sample_s, score=scored.score_s)
    with loop.phase("forward"):  # 3. old and reference log-probs, values
        seqs, old_logprobs, ref_logprobs, values = rollout_forward(run, scored)
    with loop.phase("advantages"):  # 4. KL-shaped rewards, GAE, whitening
        exp, metrics = make_experience(seqs, scored, old_logprobs, ref_logprobs, values, cfg, acc)
    with loop.phase("update"):  # 5. clipped policy and value losses
        metrics.update(ppo_update(run.ac, run.opt, exp, cfg, acc, loop))
    metrics.update(rollout_stats(exp, acc))
    guard(metrics, loop, cfg)
    return metrics


@torch.no_grad()
def rollout_forward(run: PPORun, scored: Scored):
    """The rollout's tensors, the old policy's and the reference's log-probs of each response
    token, and the values (None without a value model), all with dropout off so that the
    first PPO ratio is exactly 1. Forwards run on micro-batches of at most
    ``--micro-batch-tokens`` tokens, trimmed of common padding, with the LM head on the
    response positions only; 0 past each micro-batch's longest response. With
    ``--sampler-logprobs`` the old log-probs (and the shared head's values) are the
    sampler's, and the policy is not run again."""
    cfg, acc, gens = run.cfg, run.acc, scored.gens
    seqs = build_sequences(gens, run.tokenizer.pad_token_id, acc.device)
    dropout_off(run.ac)
    ref = torch.zeros(seqs.response_mask.shape, device=acc.device)
    old, values = _from_sampler(run, gens, ref.shape)
    forward = old is None or (values is None and run.critic == "separate")
    old = torch.zeros_like(ref) if old is None else old
    if cfg.pack and not run.pack_checked:  # once, on every process (forwards may be collective)
        check_packing(run, seqs.select(torch.arange(min(4, len(seqs)), device=acc.device)).trim())
    # with sharded parameters (ZeRO-3) every forward is collective: as many on every process
    for idx, real in _micro_split(seqs, cfg, acc, pad=shards_params(acc)):
        mb = seqs.select(idx).trim()
        t = mb.response_mask.size(1)
        inputs, labels, unpack = forward_inputs(mb, cfg)
        if forward:
            logits, v = run.ac(**inputs)
            if real and gens.logprobs is None:
                old[idx, :t] = unpack(logprobs_from_logits(_at_temperature(logits, cfg), labels))
            del logits
            if real and v is not None:
                values = torch.zeros_like(old) if values is None else values
                values[idx, :t] = unpack(v.float())
        with acc.autocast():
            logits = lm_response_logits(run.ref, **inputs)
        if real:
            ref[idx, :t] = unpack(logprobs_from_logits(_at_temperature(logits, cfg), labels))
        del logits
    return seqs, old, ref, values


def _from_sampler(run: PPORun, gens, shape) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(B, T) old log-probs and shared-head values from what the sampler kept (None where it
    kept nothing), 0 past each completion."""
    dev = run.acc.device
    old = values = None
    if gens.logprobs is not None:
        old = torch.zeros(shape, device=dev)
        for i, row in enumerate(gens.logprobs):
            old[i, : len(row)] = torch.as_tensor(row, dtype=torch.float32, device=dev)
    if gens.hidden is not None:
        head = run.acc.unwrap_model(run.ac).body
        values = torch.zeros(shape, device=dev)
        for i, h in enumerate(gens.hidden):
            if len(h):
                values[i, : len(h)] = head.values(h.to(dev))
    return old, values


def _at_temperature(logits: torch.Tensor, cfg: PPOConfig) -> torch.Tensor:
    """The logits of the sampling distribution (no copy at temperature 1)."""
    t = cfg.sampling.temperature
    return logits if t == 1 else logits / t


@torch.no_grad()
def make_experience(seqs: Sequences, scored: Scored, old_logprobs, ref_logprobs, values,
                    cfg: PPOConfig, acc) -> tuple[Experience, dict[str, float]]:
    """The finished rollout: scores, KL-shaped rewards turned into (whitened) advantages by
    the configured estimator, and returns; with the mean sequence KL."""
    dev = seqs.input_ids.device
    scores = torch.tensor([j.score for j in scored.judged], device=dev, dtype=torch.float)
    correct = torch.tensor([j.correct for j in scored.judged], device=dev)
    mask = seqs.response_mask
    kl = kl_per_token(old_logprobs, ref_logprobs) * mask
    adv, ret = get_estimator(cfg.estimator)(
        scores=scores, mask=mask, kl=kl if cfg.kl_mode == "reward" else None, values=values,
        kl_coef=cfg.beta, gamma=cfg.gamma, lam=cfg.lam, group_size=cfg.samples_per_question)
    if cfg.whiten_advantages:
        adv = whiten(adv, mask, all_reduce=lambda t: acc.reduce(t, "sum"))
    exp = Experience(**{f: getattr(seqs, f) for f in seqs.__dataclass_fields__},
                     scores=scores, correct=correct, old_logprobs=old_logprobs,
                     ref_logprobs=ref_logprobs, values=values, advantages=adv, returns=ret)
    kl_mean = acc.reduce(sequence_kl(kl, mask).mean().detach(), "mean").item()
    return exp, {"policy/kl": kl_mean}


def ppo_update(ac, opt, r: Experience, cfg: PPOConfig, acc, loop: Loop | None = None
               ) -> dict[str, float]:
    """ppo_epochs passes over shuffled mini-batches; the mean of each statistic over the
    mini-batches whose step was taken. With ``loop`` a mini-batch whose loss or gradients
    are not finite is skipped (``Loop.skipped``); without, a non-finite loss raises."""
    sums: dict[str, float] = {}
    n = 0
    dropout_off(ac)  # the release's model.eval(): rollout and update forwards agree exactly
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(len(r), device=r.input_ids.device)
        for i in range(0, len(r), cfg.mini_batch_size):
            stats = _minibatch_step(ac, opt, r.select(perm[i : i + cfg.mini_batch_size]), cfg,
                                    acc, loop)
            if stats is None:  # skipped, on every process alike
                continue
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
    if not n:
        return {}
    keys = sorted(sums)
    means = acc.reduce(torch.tensor([sums[k] / max(n, 1) for k in keys], device=acc.device), "mean")
    return dict(zip(keys, means.tolist(), strict=True))


def _minibatch_step(ac, opt, mb: Experience, cfg: PPOConfig, acc,
                    loop: Loop | None = None) -> dict | None:
    """One optimizer step on a mini-batch: clipped policy loss (+ value loss, + KL loss),
    its gradient accumulated over micro-batches of at most ``--micro-batch-tokens`` tokens.
    None when the step was skipped (non-finite loss or gradients, ``loop`` given)."""
    # DDP's gradient all-reduce (in the last backward pass) is collective: as many passes on
    # every process; DeepSpeed's engine steps the optimizer in every backward pass: one
    parts = _micro_split(mb, cfg, acc, pad=acc.num_processes > 1,
                         whole=acc.state.deepspeed_plugin is not None)
    local = agg_count(mb.response_mask, cfg.loss_agg)  # units (tokens or sequences)
    total = acc.reduce(local.clone(), "sum")
    sums: dict[str, torch.Tensor] = {}
    for i, (idx, real) in enumerate(parts):
        part = mb.select(idx).trim()
        loss, stats = _losses(ac, part, cfg)
        # every process must see a bad loss, or the others would wait in backward for ever
        finite = acc.reduce(torch.isfinite(loss.detach()).float().reshape(1), "sum")
        if finite.item() < acc.num_processes:  # no (further) backward pass: skip the step, or stop
            reason = f"non-finite loss in the PPO update ({_describe(loss, stats)})"
            if loop is None:
                raise TrainingError(reason)
            opt.zero_grad(set_to_none=True)
            loop.skipped(reason)
            return None
        # each part's loss is a mean over its units: weighted by its share of the global
        # mini-batch's units, the sum over parts and DDP's average over processes is the
        # global aggregate; gradients are all-reduced in the last part only
        share = agg_count(part.response_mask, cfg.loss_agg) if real else local.new_zeros(())
        sync = contextlib.nullcontext() if i == len(parts) - 1 else acc.no_sync(ac)
        with sync:
            acc.backward(loss * process_weight(share, total, acc.num_processes))
        for k, v in stats.items():
            sums[k] = sums.get(k, 0.0) + v * share / local.clamp(min=1)
    if loop is not None:
        if not loop.apply_update(ac.parameters(), opt):
            return None
    else:
        acc.clip_grad_norm_(ac.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return sums


def _losses(ac, part: Experience, cfg: PPOConfig) -> tuple[torch.Tensor, dict]:
    """The PPO loss of one micro-batch and its statistics (entropy included); the logits
    are freed before the backward pass."""
    inputs, labels, unpack = forward_inputs(part, cfg)
    logits, values = ac(**inputs)
    logits = _at_temperature(logits, cfg)
    logprobs = unpack(logprobs_from_logits(logits, labels))
    with torch.no_grad():
        entropy = masked_mean(unpack(entropy_from_logits(logits)), part.response_mask)
    del logits
    values = None if values is None else unpack(values)
    loss, stats = policy_loss(logprobs, part.old_logprobs, part.advantages, part.response_mask,
                              cfg.clip_eps, cfg.loss_agg)
    if values is not None:
        vloss, vstats = value_loss(values, part.values, part.returns, part.response_mask,
                                   cfg.value_clip, cfg.loss_agg)
        loss = loss + cfg.vf_coef * vloss
        stats.update(vstats)
    if cfg.kl_mode == "loss":
        kloss, kstats = kl_loss(logprobs, part.ref_logprobs, part.response_mask, loss_agg=cfg.loss_agg)
        loss = loss + cfg.beta * kloss
        stats.update(kstats)
    stats["policy/entropy"] = entropy
    return loss, stats


def _micro_split(seqs: Sequences, cfg: PPOConfig, acc, pad: bool, whole: bool = False
                 ) -> list[tuple[torch.Tensor, bool]]:
    """The rows' micro-batches of at most ``--micro-batch-tokens`` tokens as (row indices,
    real); ``whole``: one of all the rows. ``pad``: as many on every process (collective
    forwards or backward passes pair up): a process with fewer repeats its first row, not
    real (no weight, nothing kept)."""
    if whole:
        return [(torch.arange(len(seqs), device=seqs.input_ids.device), True)]
    groups = seqs.micro_batches(cfg.micro_batch_tokens, packed=cfg.pack)
    n = len(groups)
    if pad and acc.num_processes > 1:
        n = int(acc.gather(torch.tensor([n], device=acc.device)).max())
    return [(g, True) for g in groups] + [(groups[0][:1], False)] * (n - len(groups))


def _describe(loss: torch.Tensor, stats: dict) -> str:
    parts = {"loss": loss.detach(), **{k: v for k, v in stats.items() if k.startswith("loss/")}}
    return ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())


def rollout_stats(r: Experience, acc) -> dict[str, float]:
    """Rewards, lengths and value diagnostics of a rollout, averaged over processes."""
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


def periodic_eval(run: PPORun) -> float:
    """Greedy top-1 on the held-out questions, shared among the processes."""
    from reft.eval.runner import evaluate_sharded

    with run.acc.autocast():
        summary, _ = evaluate_sharded(run.lm, run.tokenizer, run.test, run.cfg, 0, progress=False,
                                      all_done=all_done_fn(run.acc))
    return summary["top1"]


GUARD_IGNORES = ("value/explained_variance",)
"""Metrics allowed to be NaN: explained variance is, by definition, when the returns do not vary."""


def guard(metrics: dict[str, float], loop: Loop, cfg: PPOConfig) -> None:
    """Stop the run (``TrainingError``, naming the rule, the value and the last good
    checkpoint) on a non-finite metric, a mean per-sequence KL to the reference above
    ``--kl-stop`` (diverged) or a policy entropy below ``--entropy-stop`` (collapsed); warn
    above ``--kl-warn``."""
    loop.check_finite(metrics, ignore=GUARD_IGNORES)
    kl, entropy, step = metrics["policy/kl"], metrics.get("policy/entropy"), loop.step + 1
    if cfg.kl_stop and kl > cfg.kl_stop:
        raise TrainingError(f"step {step}: diverged: policy/kl {kl:.4g} > --kl-stop {cfg.kl_stop:g}; "
                            f"{loop.last_good()}")
    if cfg.entropy_stop and entropy is not None and entropy < cfg.entropy_stop:
        raise TrainingError(f"step {step}: collapsed: policy/entropy {entropy:.4g} < --entropy-stop "
                            f"{cfg.entropy_stop:g}; {loop.last_good()}")
    if kl > cfg.kl_warn:
        tqdm.write(f"warning: KL to the reference is {kl:.2f} (> --kl-warn {cfg.kl_warn})")
