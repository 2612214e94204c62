"""``reft eval``: greedy top-1, and with k samples vote@k, pass@k and rerank@k.

Under ``accelerate launch``/``torchrun`` the questions are shared among the processes,
the records gathered in question order and written once; samples are seeded per
question, so N processes give the records one process would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reft.config import PROMPT_TEMPLATE, EvalConfig
from reft.configio import config_from_args, to_dict
from reft.data.records import Example


@dataclass(frozen=True)
class EvalSettings:
    cot: str = "nl"
    task: str = "numeric"
    template: str = PROMPT_TEMPLATE
    max_new_tokens: int = 256
    batch_size: int = 64
    k: int = 0
    temperature: float = 1.0
    timeout_s: float = 3.0
    answer_parser: str = "default"

    @classmethod
    def from_config(cls, cfg) -> EvalSettings:
        return cls(**{f: getattr(cfg, f) for f in cls.__dataclass_fields__ if hasattr(cfg, f)})


def judge_texts(texts: list[str], examples: list[Example], s: EvalSettings, repeat: int = 1,
                partial: float = 0.1):
    """Extracted answer, correctness and reward of each completion (P-CoT programs are run),
    read with ``s.answer_parser``, as every eval metric reads them."""
    from reft.rewards import judge

    golds = [e.answer for e in examples for _ in range(repeat)]
    if s.cot == "python":
        from reft.data.prompts import program_from_completion

        questions = [e.question for e in examples for _ in range(repeat)]
        texts = [program_from_completion(q, t) for q, t in zip(questions, texts, strict=True)]
    return judge(texts, golds, task=s.task, cot=s.cot, partial=partial, timeout_s=s.timeout_s,
                 parser=s.answer_parser)


def evaluate(
    model,
    tokenizer,
    examples: list[Example],
    s: EvalSettings,
    rerank_fn: Callable[[list[str], list[str]], list[float]] | None = None,
    progress: bool = True,
    seed: int | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> tuple[dict, list[dict]]:
    """Summary metrics and one prediction record per question.

    ``seed``: sample each question's k completions from (seed, question id) instead of
    the global torch RNG. ``all_done``: see ``generate``.
    """
    from reft.answers import is_correct
    from reft.data.prompts import build_prompt
    from reft.eval.metrics import majority_vote, rerank_pick, summarize
    from reft.rollout.sampler import generate, question_seed

    prompts = [build_prompt(e.question, cot=s.cot, template=s.template) for e in examples]
    gen = dict(max_new_tokens=s.max_new_tokens, batch_size=s.batch_size, progress=progress,
               all_done=all_done)
    greedy = generate(model, tokenizer, prompts, greedy=True, **gen)
    g_judged = judge_texts(greedy.texts, examples, s)
    records = []
    for e, text, trunc, j in zip(examples, greedy.texts, greedy.truncated, g_judged, strict=True):
        records.append({"id": e.id, "gold": e.answer, "completion": text, "pred": j.pred,
                        "correct": j.correct, "truncated": trunc, "greedy_correct": j.correct})
    if s.k > 0:
        seeds = None if seed is None else [question_seed(seed, e.id) for e in examples]
        sampled = generate(model, tokenizer, prompts, temperature=s.temperature, num_samples=s.k,
                           seeds=seeds, **gen)
        judged = judge_texts(sampled.texts, examples, s, repeat=s.k)
        scores = rerank_fn([p for p in prompts for _ in range(s.k)], sampled.texts) if rerank_fn else None
        for i, rec in enumerate(records):
            sl = slice(i * s.k, (i + 1) * s.k)
            preds = [j.pred for j in judged[sl]]
            vote = majority_vote(preds, s.task, s.answer_parser)
            rec["samples"] = [{"completion": t, "pred": j.pred, "correct": j.correct}
                              for t, j in zip(sampled.texts[sl], judged[sl], strict=True)]
            rec["sample_correct"] = [j.correct for j in judged[sl]]
            rec["vote"] = vote
            rec["vote_correct"] = vote is not None and is_correct(vote, examples[i].answer, s.task,
                                                                  s.answer_parser)
            if scores is not None:
                pick = rerank_pick(scores[sl])
                rec["rerank_scores"] = scores[sl]
                rec["rerank_correct"] = judged[sl][pick].correct
    return summarize(records), records


def evaluate_sharded(model, tokenizer, examples: list[Example], s: EvalSettings,
                     rerank_fn=None, progress: bool = True, seed: int | None = None,
                     all_done: Callable[[bool], bool] | None = None) -> tuple[dict, list[dict]]:
    """``evaluate`` with the questions shared among the processes; every process gets the
    summary and the records of all questions, in question order, each once."""
    from reft.eval.metrics import summarize
    from reft.training.common import dist_state

    state = dist_state()
    world, rank = state.num_processes, state.process_index
    if world == 1 or not examples:
        return evaluate(model, tokenizer, examples, s, rerank_fn, progress, seed, all_done)
    from accelerate.utils import gather_object

    # every process gets as many questions (some twice: dropped below), since generation
    # is collective when parameters are sharded
    idx = list(range(rank, len(examples), world))
    idx += [rank % len(examples)] * (math.ceil(len(examples) / world) - len(idx))
    _, records = evaluate(model, tokenizer, [examples[i] for i in idx], s, rerank_fn,
                          progress and state.is_main_process, seed, all_done)
    by_index = dict(gather_object(list(zip(idx, records, strict=True))))
    records = [by_index[i] for i in range(len(examples))]
    return summarize(records), records


def write_eval(out: Path, summary: dict, records: list[dict], settings: dict) -> None:
    from reft.training.common import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / ".tmp-predictions.jsonl"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out / "predictions.jsonl")
    write_json_atomic(out / "eval.json", {**summary, "settings": settings})


def load_reranker(path: str):
    """rerank_fn from a reward-model directory written by ``reft reranker train``."""
    from reft.training.reranker import Reranker

    return Reranker.load(path).score


def run_eval(cfg: EvalConfig) -> dict:
    from reft.data import load_examples
    from reft.models.loading import ensure_pad_token, load_model, load_tokenizer, token_ids
    from reft.training.common import dist_state, require, setup_threads

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
    summary, records = evaluate_sharded(model, tokenizer, examples, EvalSettings.from_config(cfg),
                                        rerank_fn, seed=cfg.seed)
    summary["k"] = cfg.k
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    if state.is_main_process:
        write_eval(Path(cfg.out), summary, records, to_dict(cfg))
    state.wait_for_everyone()
    return summary


def main(args) -> int:
    from reft.training.common import dist_state

    cfg = config_from_args(EvalConfig, args)
    summary = run_eval(cfg)
    if not dist_state().is_main_process:
        return 0
    shown = {k: v for k, v in summary.items() if k != "settings"}
    print(json.dumps(shown))
    print(f"wrote {Path(cfg.out) / 'eval.json'} and predictions.jsonl")
    return 0
