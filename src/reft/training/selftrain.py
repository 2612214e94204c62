"""Self-training baselines of the ReFT paper (Sec. 4.2).

Offline: sample k CoTs per training question from the warm-up model, keep the correct,
distinct ones (at most N per question), add them to the original data, SFT on the union.
Online: the RL loop's sampling, but the update is the NLL of the correct samples (plus
the gold CoT) instead of PPO.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reft.config import SampleConfig, SelfTrainConfig, SFTConfig
from reft.configio import config_from_args
from reft.data.records import Example
from reft.training.common import (
    MetricsLogger,
    TrainerState,
    make_accelerator,
    prepare_run_dir,
    require,
    save_checkpoint,
    save_final,
    setup_threads,
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

_ANSWER = "Therefore, the answer is"


def completion_to_cot(question: str, completion: str, cot: str) -> str:
    """The CoT part of a sampled completion, in the form ``Example.cot`` stores."""
    if cot == "python":
        from reft.data.prompts import program_from_completion

        return program_from_completion(question, completion)
    cut = completion.rfind(_ANSWER)
    return (completion[:cut] if cut >= 0 else completion).rstrip()


def _norm(text: str) -> str:
    return " ".join(text.split())


def select_correct(records: list[dict], examples: list[Example], cot: str,
                   max_per_question: int) -> list[Example]:
    """Correct, distinct sampled CoTs (at most ``max_per_question`` each), as new examples.

    A sample equal to the annotated CoT (after whitespace normalisation) adds nothing and
    is dropped; duplicates among samples are kept once.
    """
    by_id = {e.id: e for e in examples}
    out: list[Example] = []
    for rec in records:
        e = by_id.get(str(rec["id"]))
        if e is None:
            continue
        seen = {_norm(e.cot or "")}
        kept = 0
        for s in rec["samples"]:
            if kept >= max_per_question:
                break
            if not s["correct"]:
                continue
            cot_text = completion_to_cot(e.question, s["completion"], cot)
            if _norm(cot_text) in seen:
                continue
            seen.add(_norm(cot_text))
            out.append(Example(id=f"{e.id}#s{kept}", question=e.question, answer=e.answer, cot=cot_text))
            kept += 1
    return out


def _sft_config(cfg: SelfTrainConfig, **changes) -> SFTConfig:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    return SFTConfig(**{**{k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}, **changes})


def offline_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    """Sample with the warm-up model, filter, SFT on data + kept samples."""
    from reft.rollout.sample_cmd import run_sample
    from reft.training.sft import train_sft

    samples = Path(cfg.out) / "samples.jsonl"
    scfg = SampleConfig(model=cfg.model, out=str(samples), k=cfg.k, cot=cfg.cot, task=cfg.task,
                        template=cfg.template, seed=cfg.seed, dtype=cfg.dtype,
                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        batch_size=cfg.gen_batch_size, timeout_s=cfg.timeout_s)
    run_sample(scfg, examples)
    import json

    records = [json.loads(line) for line in samples.read_text().splitlines() if line]
    extra = select_correct(records, examples, cfg.cot, cfg.max_per_question)
    print(f"offline self-training: {len(extra)} correct distinct samples added to {len(examples)} examples")
    return train_sft(_sft_config(cfg, out=str(Path(cfg.out) / "sft")), examples + extra)


def online_batch(records: list[dict], batch: list[Example], cfg: SelfTrainConfig) -> list[Example]:
    """What one online step trains on: correct samples (all of them) + the gold CoTs."""
    out = select_correct(records, batch, cfg.cot, max_per_question=cfg.samples_per_question)
    if cfg.include_gold:
        out += [e for e in batch if e.cot]
    return out


def online_selftrain(cfg: SelfTrainConfig, examples: list[Example]) -> Path:
    from reft.rollout.sample_cmd import sample_records

    setup_threads()
    acc = make_accelerator(cfg)
    run_dir = prepare_run_dir(cfg, acc)
    torch.manual_seed(cfg.seed)
    lm, tok = load_policy(cfg, acc)
    opt = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad],
                            lr=resolve_lr(cfg, lm, real_default=1e-5), weight_decay=cfg.weight_decay)
    lm, opt = acc.prepare(lm, opt)
    world, rank = acc.num_processes, acc.process_index
    per_epoch = math.ceil(len(examples) / (cfg.rollout_batch_size * world))
    total = per_epoch * cfg.epochs if not cfg.max_steps else min(cfg.max_steps, per_epoch * cfg.epochs)
    log, state = MetricsLogger(run_dir, acc.is_main_process), TrainerState()
    gen_cfg = SampleConfig(cot=cfg.cot, task=cfg.task, template=cfg.template, max_new_tokens=cfg.max_new_tokens,
                           temperature=cfg.temperature, batch_size=cfg.gen_batch_size, timeout_s=cfg.timeout_s)
    bar = tqdm(total=total, desc="online self-training", disable=not acc.is_main_process, dynamic_ncols=True)
    raw = acc.unwrap_model(lm)
    while state.step < total:
        for gb in epoch_batches(len(examples), cfg.rollout_batch_size * world, cfg.seed, state.epoch):
            if state.step >= total:
                break
            batch = [examples[j] for j in gb[rank * cfg.rollout_batch_size:(rank + 1) * cfg.rollout_batch_size]]
            t0 = time.perf_counter()
            # 1. sample, 2. keep the correct ones, 3. NLL step on them (+ gold)
            records = sample_records(raw, tok, batch, gen_cfg, cfg.samples_per_question)
            acc_frac = sum(s["correct"] for r in records for s in r["samples"]) / max(1, len(records) * cfg.samples_per_question)
            train = online_batch(records, batch, cfg)
            loss = nll_step(lm, opt, tok, train, cfg, acc)
            state.step += 1
            log.log(state.step, {"loss": loss, "reward/accuracy": acc_frac, "train/examples": len(train),
                                 "time/step_s": time.perf_counter() - t0}, epoch=state.epoch + 1)
            bar.update(1)
        else:
            state.epoch += 1
    bar.close()
    save_checkpoint(acc, run_dir, f"step-{state.step}", state, hf_saver(acc, lm, tok))
    log.close()
    return save_final(acc, run_dir, hf_saver(acc, lm, tok, merge=True))


def nll_step(lm, opt, tok, train: list[Example], cfg: SelfTrainConfig, acc) -> float:
    """One optimizer step of token-mean NLL on the CoT tokens of ``train``."""
    if not train:
        return float("nan")
    feats = encode_pairs(*sft_pairs(train, cfg.cot, cfg.template), tok, cfg.max_length)
    n_tok = sum(sum(x != IGNORE for x in f["labels"][1:]) for f in feats)
    total = 0.0
    for i in range(0, len(feats), cfg.batch_size):
        batch = {k: v.to(acc.device) for k, v in collate(feats[i:i + cfg.batch_size], tok.pad_token_id).items()}
        nll, _ = token_nll(lm, batch)
        acc.backward(nll / n_tok)
        total += nll.item()
    acc.clip_grad_norm_(lm.parameters(), cfg.max_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return total / n_tok


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
    print(f"self-training ({cfg.mode}) finished: {final}")
    return 0
