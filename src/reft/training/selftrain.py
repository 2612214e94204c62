"""Self-training baselines of the ReFT paper (Sec. 4.2).

Offline: sample k CoTs per training question from the warm-up model, keep the correct,
distinct ones (at most N per question), add them to the original data, SFT on the union.
Online (the release's ``train_rl_sl.py``): the RL loop's sampling, but the update is
1/2 NLL(correct samples) + 1/2 NLL(gold CoTs) instead of PPO, twice on each sampled batch.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import NamedTuple

import torch

from reft.config import SampleConfig, SelfTrainConfig, SFTConfig
from reft.configio import convert
from reft.data.records import Example
from reft.errors import UserError
from reft.rollout import sample as sampling
from reft.rollout.sampler import question_seed
from reft.runtime.checkpoint import check_run_dir, prepare_run_dir, require
from reft.runtime.dist import all_done_fn, dist_state, setup_threads, shards_params, zero_stage
from reft.runtime.precision import adamw, make_accelerator
from reft.training.loop import Loop, load_train_examples, total_steps
from reft.training.nll import IGNORE, collate, encode_pairs, sft_pairs, token_nll
from reft.training.policy import hf_saver, load_policy, resolve_lr
from reft.training.sft import encode_examples

# the trigger reft.answers grades after (its last one), with a "Therefore," before it
_ANSWER = re.compile(r"(?:therefore,?[ \t]*)?the answer is", re.IGNORECASE)


def completion_to_cot(question: str, completion: str, cot: str) -> str:
    """The CoT part of a sampled completion, in the form ``Example.cot`` stores.

    N-CoT: the text before the last answer trigger, so the target adds its own answer
    sentence exactly once (whatever the sample wrote there, or after it, is dropped).
    """
    if cot == "python":
        from reft.data.prompts import program_from_completion

        return program_from_completion(question, completion)
    starts = [m.start() for m in _ANSWER.finditer(completion)]
    return (completion[: starts[-1]] if starts else completion).rstrip()


def _norm(text: str) -> str:
    return " ".join(text.split())


def select_correct(records: list[dict], examples: list[Example], cot: str,
                   max_per_question: int, distinct: bool = True) -> list[Example]:
    """Correct sampled CoTs (at most ``max_per_question`` each), as new examples.

    With ``distinct`` (offline), samples are compared by the target they would train on,
    whitespace normalised: one equal to the annotated CoT's adds nothing and is dropped,
    and duplicates among samples are kept once. A correct sample with no reasoning (an
    N-CoT that is only the answer sentence) has nothing to train on and is dropped.
    """
    from reft.data.prompts import build_target

    by_id = {e.id: e for e in examples}
    out: list[Example] = []
    for rec in records:
        e = by_id.get(str(rec["id"]))
        if e is None:
            continue
        seen = {_norm(build_target(e, cot))} if e.cot else set()
        kept = 0
        for s in rec["samples"]:
            if kept >= max_per_question:
                break
            if not s["correct"]:
                continue
            cot_text = completion_to_cot(e.question, s["completion"], cot)
            if not cot_text.strip():
                continue
            new = Example(id=f"{e.id}#s{kept}", question=e.question, answer=e.answer, cot=cot_text)
            key = _norm(build_target(new, cot))
            if distinct and key in seen:
                continue
            seen.add(key)
            out.append(new)
            kept += 1
    return out


def offline_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    """Sample with the warm-up model, filter, SFT on data + kept samples.

    Everything goes in ``--out`` as in any training run (so ``OUT/final`` is the model
    for both modes), plus ``samples.jsonl``, which a rerun continues rather than redoes.
    """
    from reft.rollout.samples_file import run_sample
    from reft.training.sft import train_sft

    check_run_dir(cfg)  # before samples.jsonl is written: --resume checks the checkpoint
    samples = Path(cfg.out) / "samples.jsonl"
    scfg = convert(cfg, SampleConfig, out=str(samples))
    from reft.models.loading import load_model, load_tokenizer, token_ids

    state = dist_state()
    # every process samples its share of the questions; the main process writes the file
    model = load_model(cfg.model, dtype=cfg.dtype, device=state.device)
    run_sample(scfg, examples, model=model, tokenizer=load_tokenizer(cfg.model, **token_ids(cfg)))
    del model
    records = [json.loads(line) for line in samples.read_text().splitlines() if line]
    extra = select_correct(records, examples, cfg.cot, cfg.max_per_question)
    if state.is_main_process:
        print(f"offline self-training: {len(extra)} correct distinct samples added to {len(examples)} examples")
    # the checkpoints record (and config.yaml holds) the self-training settings, not just SFT's
    return train_sft(convert(cfg, SFTConfig), examples + extra, run_cfg=cfg)


ONLINE_LR = 3e-7
"""The release's online self-training learning rate (exps/paper_exps/OnSL/_template.sh), as
ReFT's: the default for real models."""


def online_lr(cfg: SelfTrainConfig, model) -> float:
    """--lr, else the release's 3e-7 for a real model, else the tiny-model default."""
    return resolve_lr(cfg, model, real_default=ONLINE_LR)


class OnlineBatch(NamedTuple):
    """What one online step trains on."""

    samples: list[Example]
    """The correct samples, all of them, as sampled (duplicates and gold-equal ones too)."""
    gold: list[Example]
    """The questions' annotated CoTs (none without ``include_gold``)."""


def online_batch(records: list[dict], batch: list[Example], cfg: SelfTrainConfig) -> OnlineBatch:
    """The correct samples of ``records`` and, with ``include_gold``, the gold CoTs of ``batch``."""
    samples = select_correct(records, batch, cfg.cot, max_per_question=cfg.samples_per_question,
                             distinct=False)
    return OnlineBatch(samples, [e for e in batch if e.cot] if cfg.include_gold else [])


def online_terms(b: OnlineBatch, cfg: SelfTrainConfig) -> list[tuple[list[Example], float]]:
    """The loss terms of an online step, as ``nll_step`` takes them.

    The release (``train_rl_sl.py``) adds ``model(samples).loss / 2`` and ``model(gold).loss
    / 2``: each an HF token mean, the first left out when no sample is correct (the gold
    keeps its 1/2). Without ``include_gold`` the samples' term is all there is, at weight 1.
    """
    if not cfg.include_gold:
        return [(b.samples, 1.0)]
    return [(b.samples, 0.5), (b.gold, 0.5)]


def local_questions(gb: list[int], rank: int, world: int, n: int,
                    fill: bool) -> tuple[list[int], int]:
    """This process's questions of the global batch ``gb`` and how many of them are its own.

    With ``fill`` (sharded parameters: every forward pass is collective, so every process
    must sample as many prompts, in lock-step) a share that a short last batch leaves below
    ``n`` is topped up with questions of ``gb``; their samples are dropped unread.
    """
    idx = gb[rank * n:(rank + 1) * n]
    own = len(idx)
    if fill and own < n:
        idx = idx + [gb[i % len(gb)] for i in range(n - own)]
    return idx, own


def online_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    """The release's online self-training loop (``train_rl_sl.py``), numbered below."""
    if cfg.updates_per_batch < 1:
        raise UserError("--updates-per-batch must be at least 1")
    setup_threads()
    acc = make_accelerator(cfg)
    if zero_stage(acc) is not None:
        raise UserError("online self-training sums a varying number of backward passes into each "
                        "step, which DeepSpeed's engine would turn into several steps; use DDP "
                        "(accelerate launch --multi_gpu) or FSDP")
    torch.manual_seed(cfg.seed)  # LoRA initialisation
    lm, tok = load_policy(cfg, acc)
    # a UserError naming --max-length when no gold CoT fits (every step would learn nothing);
    # the run directory is made only after
    encode_examples(examples, tok, cfg, report=acc.is_main_process, label="selftrain")
    run_dir = prepare_run_dir(cfg, acc)
    opt = adamw(lm.parameters(), lr=online_lr(cfg, lm), weight_decay=cfg.weight_decay)
    lm, opt = acc.prepare(lm, opt)
    world, rank = acc.num_processes, acc.process_index
    global_batch = cfg.rollout_batch_size * world
    total = total_steps(len(examples), global_batch, cfg.epochs, cfg.max_steps)
    with Loop(cfg, acc, run_dir, total, "online self-training", hf_saver(acc, lm, tok), module=lm,
              epoch_saves=True) as loop:
        # with sharded parameters (FSDP) every forward pass gathers weights from all processes:
        # sample through the prepared model (FSDP's own forward gathers the root's weights), in
        # lock-step, with as many prompts on every process; else the plain model, no collectives
        lockstep = shards_params(acc)
        sampler, all_done = (lm if lockstep else acc.unwrap_model(lm)), all_done_fn(acc)
        for gb in loop.global_batches(len(examples), global_batch):
            idx, own = local_questions(gb, rank, world, cfg.rollout_batch_size, fill=lockstep)
            batch = [examples[j] for j in idx]
            t0 = time.perf_counter()
            # 1. sample, each question seeded by (seed, step, question): a resumed run, or one
            #    with another number of processes, draws what this one would
            seeds = [question_seed(cfg.seed, loop.step, j) for j in idx]
            records = sampling.sample_records(sampler, tok, batch, cfg, cfg.samples_per_question,
                                              seeds, all_done=all_done)[:own] if batch else []
            batch = batch[:own]
            # 2. keep the correct ones (+ gold), 3. the release's update, twice by default
            train = online_batch(records, batch, cfg)
            terms = online_terms(train, cfg)
            lm.train()  # the model's own dropout in the update (the release's model.train());
            #             loading and sampling leave it in eval mode
            losses = [nll_step(lm, opt, tok, terms, cfg, acc, loop)
                      for _ in range(cfg.updates_per_batch)]
            # counts over every process: samples, correct ones, examples trained on
            counts = acc.reduce(torch.tensor([float(sum(len(r["samples"]) for r in records)),
                                              float(sum(s["correct"] for r in records for s in r["samples"])),
                                              float(len(train.samples) + len(train.gold))],
                                             device=acc.device), "sum").tolist()
            loop.step_done({"loss/nll": sum(losses) / len(losses),
                            "reward/accuracy": counts[1] / max(1.0, counts[0]),
                            "data/examples": int(counts[2]),
                            "time/step_s": time.perf_counter() - t0}, log=True)
        loop.checkpoint()
        return loop.finish(hf_saver(acc, lm, tok, merge=True))


def nll_step(lm, opt, tok, terms: list[tuple[list[Example], float]], cfg: SelfTrainConfig,
             acc, loop=None) -> float:
    """One optimizer step on ``sum(w * NLL(examples) for examples, w in terms)``.

    Each NLL is a mean over the CoT tokens (target + eos) of its examples on all processes
    together, so N processes step as one process with the same global batch would; a term
    with no tokens anywhere adds nothing (the others keep their weights). Processes hold
    different numbers of examples (or none); each runs as many backward passes as the
    busiest one (extra ones with a zero loss), so the gradient all-reduces (and, with
    sharded parameters, every forward pass) pair up. Returns the loss, or NaN, without
    stepping, when no process has anything to learn.
    """
    feats = [encode_pairs(*sft_pairs(ex, cfg.cot, cfg.template), tok, cfg.max_length) if ex else []
             for ex, _ in terms]
    n_tok = [sum(sum(x != IGNORE for x in f["labels"][1:]) for f in fs) for fs in feats]
    chunks = [(g, fs[i:i + cfg.batch_size]) for g, fs in enumerate(feats)
              for i in range(0, len(fs), cfg.batch_size)]
    counts = acc.gather(torch.tensor([[*n_tok, len(chunks)]], device=acc.device))  # (world, G + 1)
    totals, passes = counts[:, :-1].sum(0).tolist(), int(counts[:, -1].max())
    if not any(totals):
        return float("nan")
    scale = [w * acc.num_processes / t if t else 0.0
             for (_, w), t in zip(terms, totals, strict=True)]
    idle = [{"input_ids": [tok.eos_token_id] * 2, "labels": [IGNORE] * 2}]
    sums = [0.0] * len(terms)
    for i in range(passes):
        g, chunk = chunks[i] if i < len(chunks) else (None, idle)
        batch = {k: v.to(acc.device) for k, v in collate(chunk, tok.pad_token_id).items()}
        nll, _ = token_nll(lm, batch)
        acc.backward(nll * (scale[g] if g is not None else 0.0))
        if g is not None:
            sums[g] += nll.item()
    if loop is not None:  # a step with non-finite gradients is skipped (Loop.apply_update)
        loop.apply_update(lm.parameters(), opt)
    else:
        acc.clip_grad_norm_(lm.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
    sums = acc.reduce(torch.tensor(sums, device=acc.device, dtype=torch.float64), "sum").tolist()
    return sum(w * s / t for (_, w), s, t in zip(terms, sums, totals, strict=True) if t)


def run_selftrain(cfg: SelfTrainConfig, examples: list[Example] | None = None) -> Path:
    require(cfg, "model", *(() if examples is not None else ("train_file",)))
    if examples is None:

        examples = load_train_examples(cfg, require_cot=True)
    if cfg.mode == "offline":
        return offline_selftrain(cfg, examples)
    return online_selftrain(cfg, examples)
