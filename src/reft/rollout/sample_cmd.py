"""``reft sample``: k completions per question to JSON lines, resumable.

The output is written one question per line, a chunk of questions at a time and flushed;
rerunning the same command skips the questions already written (a torn last line from
a killed run is dropped), so nothing finished is redone or lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from reft.config import SampleConfig
from reft.configio import config_from_args
from reft.data.records import Example
from reft.errors import UserError


def finished_ids(path: Path) -> set[str]:
    """Ids already in ``path``; a torn (unparsable) last line is cut off the file."""
    if not path.exists():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                if not raw.endswith(b"\n"):  # cut before its newline: the next write would join it
                    raise ValueError(raw)
                row = json.loads(raw)
                done.add(str(row["id"]))
            except (ValueError, KeyError, TypeError):  # JSONDecodeError is a ValueError
                rest = f.read()
                if rest.strip():
                    raise UserError(f"{path}: line {n}: not a sample record; refusing to append") from None
                break
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        os.truncate(path, good_bytes)
    return done


def sample_records(model, tokenizer, examples: list[Example], cfg, k: int) -> list[dict]:
    """One record per question: k completions with extracted answers and correctness."""
    from reft.data.prompts import build_prompt
    from reft.eval.runner import EvalSettings, judge_texts
    from reft.rollout.sampler import generate

    prompts = [build_prompt(e.question, cot=cfg.cot, template=cfg.template) for e in examples]
    gens = generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature, batch_size=cfg.batch_size, num_samples=k)
    judged = judge_texts(gens.texts, examples, EvalSettings.from_config(cfg), repeat=k)
    out = []
    for i, e in enumerate(examples):
        sl = slice(i * k, (i + 1) * k)
        out.append({
            "id": e.id, "question": e.question, "gold": e.answer,
            "samples": [{"completion": t, "pred": j.pred, "correct": j.correct, "truncated": tr}
                        for t, j, tr in zip(gens.texts[sl], judged[sl], gens.truncated[sl], strict=True)],
        })
    return out


def run_sample(cfg: SampleConfig, examples: list[Example] | None = None, model=None, tokenizer=None) -> Path:
    import torch
    from tqdm.auto import tqdm

    from reft.training.common import require, setup_threads

    require(cfg, "model", *(() if examples is not None else ("data_file",)))
    if cfg.k < 1:
        raise UserError("--k must be at least 1")
    setup_threads()
    if examples is None:
        from reft.data import load_examples

        examples = load_examples(cfg.data_file, data_format=cfg.data_format, columns=cfg.columns,
                                 task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                                 max_examples=cfg.max_examples)
    if model is None:
        from reft.models.loading import ensure_pad_token, load_model, load_tokenizer
        from reft.training.common import default_device

        tokenizer = ensure_pad_token(load_tokenizer(cfg.model))
        model = load_model(cfg.model, dtype=cfg.dtype, device=default_device())
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(out)
    chunk = max(1, cfg.batch_size // cfg.k)
    with out.open("a") as f, tqdm(total=len(examples), initial=len(done & {e.id for e in examples}),
                                  desc="sample", dynamic_ncols=True) as bar:
        for c, start in enumerate(range(0, len(examples), chunk)):
            part = examples[start : start + chunk]
            todo = [e for e in part if e.id not in done]
            if not todo:
                continue
            # chunks are fixed slices, each seeded by its index and sampled whole (even when a
            # killed run wrote some of it): a resumed run samples the same completions an
            # uninterrupted one would, since a batch's draws depend on all of its rows
            torch.manual_seed(cfg.seed * 1_000_003 + c)
            for rec in sample_records(model, tokenizer, part, cfg, cfg.k):
                if rec["id"] not in done:
                    f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
            bar.update(len(todo))
    return out


def main(args) -> int:
    cfg = config_from_args(SampleConfig, args)
    out = run_sample(cfg)
    print(f"wrote {out}")
    return 0
