"""Self-training baselines of the ReFT paper (Sec. 4.2).

Offline: sample k CoTs per training question from the warm-up model, keep the correct,
distinct ones (at most N per question), add them to the original data, SFT on the union.
Online: the RL loop's sampling, but the update is the NLL of the correct samples (plus
the gold CoT) instead of PPO.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reft.config import SampleConfig, SelfTrainConfig, SFTConfig
from reft.configio import config_from_args
from reft.data.records import Example
from reft.errors import UserError
from reft.rollout.sampler import question_seed
from reft.training.common import (
    MetricsLogger,
    TrainerState,
    dist_state,
    last_checkpoint,
    load_checkpoint,
    make_accelerator,
    prepare_run_dir,
    require,
    save_checkpoint,
    save_final,
    setup_threads,
    zero_stage,
)
from reft.training.sft import (
    IGNORE,
    collate,
    encode_pairs,
    epoch_batches,
    hf_saver,
    load_policy,
    resolve_lr,
    sft_pairs,
    token_nll,
)

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


def _sft_config(cfg: SelfTrainConfig, **changes) -> SFTConfig:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    return SFTConfig(**{**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}, **changes})


def offline_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    """Sample with the warm-up model, filter, SFT on data + kept samples.

    Everything goes in ``--out`` as in any training run (so ``OUT/final`` is the model
    for both modes), plus ``samples.jsonl``, which a rerun continues rather than redoes.
    """
    from reft.configio import save_config
    from reft.rollout.sample_cmd import run_sample
    from reft.training.sft import train_sft

    samples = Path(cfg.out) / "samples.jsonl"
    scfg = SampleConfig(model=cfg.model, out=str(samples), k=cfg.k, cot=cfg.cot, task=cfg.task,
                        template=cfg.template, seed=cfg.seed, dtype=cfg.dtype,
                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        batch_size=cfg.gen_batch_size, timeout_s=cfg.timeout_s)
    from reft.models.loading import load_model, load_tokenizer

    state = dist_state()
    # every process samples its share of the questions; the main process writes the file
    model = load_model(cfg.model, dtype=cfg.dtype, device=state.device)
    run_sample(scfg, examples, model=model, tokenizer=load_tokenizer(cfg.model))
    del model
    records = [json.loads(line) for line in samples.read_text().splitlines() if line]
    extra = select_correct(records, examples, cfg.cot, cfg.max_per_question)
    if state.is_main_process:
        print(f"offline self-training: {len(extra)} correct distinct samples added to {len(examples)} examples")
    final = train_sft(_sft_config(cfg), examples + extra)
    if state.is_main_process:
        save_config(cfg, Path(cfg.out) / "config.yaml")  # the self-training settings, not just SFT's
    return final


def online_batch(records: list[dict], batch: list[Example], cfg: SelfTrainConfig) -> list[Example]:
    """What one online step trains on: correct samples (all of them, as sampled) + the gold CoTs."""
    out = select_correct(records, batch, cfg.cot, max_per_question=cfg.samples_per_question,
                         distinct=False)
    if cfg.include_gold:
        out += [e for e in batch if e.cot]
    return out


def online_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    from reft.rollout.sample_cmd import sample_records

    setup_threads()
    acc = make_accelerator(cfg)
    if zero_stage(acc) is not None:
        raise UserError("online self-training sums a varying number of backward passes into each "
                        "step, which DeepSpeed's engine would turn into several steps; use DDP "
                        "(accelerate launch --multi_gpu) or FSDP")
    run_dir = prepare_run_dir(cfg, acc)
    torch.manual_seed(cfg.seed)  # LoRA initialisation
    lm, tok = load_policy(cfg, acc)
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad],
                            lr=resolve_lr(cfg, lm, real_default=1e-5), weight_decay=cfg.weight_decay)
    lm, opt = acc.prepare(lm, opt)
    world, rank = acc.num_processes, acc.process_index
    per_epoch = math.ceil(len(examples) / (cfg.rollout_batch_size * world))
    total = per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, per_epoch * cfg.epochs)
    state = TrainerState()
    ckpt = last_checkpoint(run_dir) if cfg.resume else None
    if ckpt is not None:
        state = load_checkpoint(acc, ckpt)
    log = MetricsLogger(run_dir, acc.is_main_process, state.step if ckpt else None)
    gen_cfg = SampleConfig(cot=cfg.cot, task=cfg.task, template=cfg.template, max_new_tokens=cfg.max_new_tokens,
                           temperature=cfg.temperature, batch_size=cfg.gen_batch_size, timeout_s=cfg.timeout_s)
    bar = tqdm(total=total, initial=state.step, desc="online self-training", disable=not acc.is_main_process,
               dynamic_ncols=True)
    raw, saved = acc.unwrap_model(lm), state.step
    while state.step < total:
        batches = epoch_batches(len(examples), cfg.rollout_batch_size * world, cfg.seed, state.epoch)
        for gb in batches[state.batch_in_epoch:]:
            if state.step >= total:
                break
            idx = gb[rank * cfg.rollout_batch_size:(rank + 1) * cfg.rollout_batch_size]
            batch = [examples[j] for j in idx]
            t0 = time.perf_counter()
            # 1. sample, each question seeded by (seed, step, question): a resumed run, or
            #    one with another number of processes, draws what this one would
            seeds = [question_seed(cfg.seed, state.step, j) for j in idx]
            records = sample_records(raw, tok, batch, gen_cfg, cfg.samples_per_question, seeds)
            n = sum(len(r["samples"]) for r in records)
            acc_frac = sum(s["correct"] for r in records for s in r["samples"]) / max(1, n)
            # 2. keep the correct ones (+ gold), 3. one NLL step on them
            train = online_batch(records, batch, cfg)
            loss = nll_step(lm, opt, tok, train, cfg, acc)
            state.step += 1
            state.batch_in_epoch += 1
            log.log(state.step, {"loss": loss, "reward/accuracy": acc_frac, "train/examples": len(train),
                                 "time/step_s": time.perf_counter() - t0}, epoch=state.epoch + 1)
            bar.update(1)
        else:
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            save_checkpoint(acc, run_dir, f"epoch-{state.epoch}", state, hf_saver(acc, lm, tok))
            saved = state.step
    bar.close()
    if saved != state.step:
        save_checkpoint(acc, run_dir, f"step-{state.step}", state, hf_saver(acc, lm, tok))
    log.close()
    return save_final(acc, run_dir, hf_saver(acc, lm, tok, merge=True))


def nll_step(lm, opt, tok, train: list[Example], cfg: SelfTrainConfig, acc) -> float:
    """One optimizer step of NLL on the CoT tokens of ``train``: a token mean over all processes.

    Processes hold different numbers of examples (or none); each runs as many backward
    passes as the busiest one (extra ones with a zero loss), so DDP's gradient all-reduce
    always pairs up. Returns NaN, without stepping, when no process has anything to learn.
    """
    feats = encode_pairs(*sft_pairs(train, cfg.cot, cfg.template), tok, cfg.max_length) if train else []
    n_tok = sum(sum(x != IGNORE for x in f["labels"][1:]) for f in feats)
    chunks = [feats[i:i + cfg.batch_size] for i in range(0, len(feats), cfg.batch_size)]
    counts = acc.gather(torch.tensor([[n_tok, len(chunks)]], device=acc.device))  # (world, 2)
    total_tok, passes = int(counts[:, 0].sum()), int(counts[:, 1].max())
    if total_tok == 0:
        return float("nan")
    idle = [{"input_ids": [tok.eos_token_id] * 2, "labels": [IGNORE] * 2}]
    loss_sum = 0.0
    for i in range(passes):
        real = i < len(chunks)
        batch = {k: v.to(acc.device) for k, v in collate(chunks[i] if real else idle, tok.pad_token_id).items()}
        nll, _ = token_nll(lm, batch)
        acc.backward(nll * (acc.num_processes / total_tok if real else 0.0))
        loss_sum += nll.item() if real else 0.0
    acc.clip_grad_norm_(lm.parameters(), cfg.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return acc.reduce(torch.tensor(loss_sum, device=acc.device), "sum").item() / total_tok


def run_selftrain(cfg: SelfTrainConfig, examples: list[Example] | None = None) -> Path:
    require(cfg, "model", *(() if examples is not None else ("train_file",)))
    if examples is None:
        from reft.data import load_examples

        examples = load_examples(cfg.train_file, data_format=cfg.data_format, columns=cfg.columns,
                                 task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                                 max_examples=cfg.max_examples, require_cot=True)
    if cfg.mode == "offline":
        return offline_selftrain(cfg, examples)
    return online_selftrain(cfg, examples)


def main(args) -> int:
    cfg = config_from_args(SelfTrainConfig, args)
    final = run_selftrain(cfg)
    if dist_state().is_main_process:
        print(f"self-training ({cfg.mode}) finished: {final}")
    return 0
