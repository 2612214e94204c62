"""``reft eval``: greedy top-1, and with k samples vote@k, pass@k and rerank@k.

Under ``accelerate launch``/``torchrun`` the questions are shared among the processes,
the records gathered in question order and written once; samples are seeded per
question, so N processes give the records one process would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from reft.config import EvalConfig
from reft.configio import to_dict
from reft.data.records import Example


def evaluate(
    model,
    tokenizer,
    examples: list[Example],
    cfg,
    k: int = 0,
    rerank_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    progress: bool = True,
    seed: int | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> tuple[dict, list[dict]]:
    """Summary metrics and one prediction record per question: greedy top-1, and with
    ``k`` > 0 k samples per question for vote@k, pass@k (and rerank@k with ``rerank_fn``).

    ``cfg``: the prompt, sampling and scoring settings (an ``EvalConfig`` or any config
    that samples). ``seed``: sample each question's k completions from (seed, question id)
    instead of the global torch RNG. ``all_done``: see ``generate``.
    """
    from reft.eval.metrics import summarize
    from reft.rollout.sample import sample_and_score
    from reft.rollout.sampler import question_seed

    gen = dict(progress=progress, all_done=all_done)
    greedy = sample_and_score(model, tokenizer, examples, cfg, greedy=True, **gen)
    records = []
    for e, text, trunc, j in zip(examples, greedy.gens.texts, greedy.gens.truncated, greedy.judged,
                                 strict=True):
        records.append({"id": e.id, "gold": e.answer, "completion": text, "pred": j.pred,
                        "correct": j.correct, "truncated": trunc, "greedy_correct": j.correct})
    if k > 0:
        seeds = None if seed is None else [question_seed(seed, e.id) for e in examples]
        sampled = sample_and_score(model, tokenizer, examples, cfg, num_samples=k, seeds=seeds, **gen)
        scores = None
        if rerank_fn:
            scores = rerank_fn([p for p in greedy.prompts for _ in range(k)], sampled.gens.texts)
        for i, rec in enumerate(records):
            _add_samples(rec, examples[i], sampled, slice(i * k, (i + 1) * k), cfg, scores)
    return summarize(records), records


def _add_samples(rec: dict, e: Example, sampled, sl: slice, cfg, scores) -> None:
    """A question's k samples, their majority vote and (with ``scores``) the reranked pick."""
    from reft.answers import is_correct
    from reft.eval.metrics import candidate, majority_vote, rerank_pick

    judged = sampled.judged[sl]
    vote = majority_vote([j.pred for j in judged], cfg.task, cfg.answer_parser)
    rec["samples"] = [{"completion": t, "pred": j.pred, "correct": j.correct}
                      for t, j in zip(sampled.gens.texts[sl], judged, strict=True)]
    rec["sample_correct"] = [j.correct for j in judged]
    rec["vote"] = vote
    rec["vote_correct"] = vote is not None and is_correct(vote, e.answer, cfg.task, cfg.answer_parser)
    if scores is not None:
        pick = rerank_pick(scores[sl], [candidate(j.pred, cfg.task, cfg.answer_parser) is not None
                                        for j in judged])
        rec["rerank_scores"] = scores[sl]
        rec["rerank_correct"] = pick is not None and judged[pick].correct


def evaluate_sharded(model, tokenizer, examples: list[Example], cfg, k: int = 0,
                     rerank_fn=None, progress: bool = True, seed: int | None = None,
                     all_done: Callable[[bool], bool] | None = None) -> tuple[dict, list[dict]]:
    """``evaluate`` with the questions shared among the processes; every process gets the
    summary and the records of all questions, in question order, each once."""
    from reft.eval.metrics import summarize
    from reft.runtime.dist import dist_state

    state = dist_state()
    world, rank = state.num_processes, state.process_index
    if world == 1 or not examples:
        return evaluate(model, tokenizer, examples, cfg, k, rerank_fn, progress, seed, all_done)
    from accelerate.utils import gather_object

    # every process gets as many questions (some twice: dropped below), since generation
    # is collective when parameters are sharded
    idx = list(range(rank, len(examples), world))
    idx += [rank % len(examples)] * (math.ceil(len(examples) / world) - len(idx))
    _, records = evaluate(model, tokenizer, [examples[i] for i in idx], cfg, k, rerank_fn,
                          progress and state.is_main_process, seed, all_done)
    by_index = dict(gather_object(list(zip(idx, records, strict=True))))
    records = [by_index[i] for i in range(len(examples))]
    return summarize(records), records


def write_eval(out: Path, summary: dict, records: list[dict], settings: dict) -> None:
    from reft.runtime.io import write_json_atomic, write_jsonl_atomic

    write_jsonl_atomic(out / "predictions.jsonl", records)
    write_json_atomic(out / "eval.json", {**summary, "settings": settings})


def load_reranker(path: str):
    """rerank_fn from a reward-model directory written by ``reft reranker train``."""
    from reft.models.reranker import Reranker

    return Reranker.load(path).score


def run_eval(cfg: EvalConfig) -> dict:
    from reft.rollout.samples_file import check_writable

    check_writable(Path(cfg.out) / "eval.json")  # before torch, the data and the model load
    from reft.data import load_examples
    from reft.models.loading import ensure_pad_token, load_model, load_tokenizer, token_ids
    from reft.runtime.checkpoint import require
    from reft.runtime.dist import dist_state, setup_threads

    require(cfg, "model", "test_file")
    setup_threads()
    state = dist_state()
    examples = load_examples(cfg.test_file, data_format=cfg.data_format, columns=cfg.columns,
                             task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                             max_examples=cfg.max_examples)
    tokenizer = ensure_pad_token(load_tokenizer(cfg.model, **token_ids(cfg)))
    model = load_model(cfg.model, dtype=cfg.dtype, device=state.device)
    rerank_fn = load_reranker(cfg.rerank) if cfg.rerank else None
    t0 = time.perf_counter()
    summary, records = evaluate_sharded(model, tokenizer, examples, cfg, cfg.k, rerank_fn,
                                        seed=cfg.seed)
    summary["k"] = cfg.k
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    if state.is_main_process:
        write_eval(Path(cfg.out), summary, records, to_dict(cfg))
    state.wait_for_everyone()
    return summary
