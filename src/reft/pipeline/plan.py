"""``reft pipeline CONFIG --dry-run``: what a pipeline would run, and the memory it needs.

Resolves the data (names against the cache, without downloading; local files counted),
the model's config (a local directory, the Hugging Face cache or the hub; ``HF_HUB_OFFLINE``
honoured; ``model: {init: tiny}`` from reft's preset, no tokenizer trained), the stages in
order with their settings and numbers of steps, and an estimate of each stage's peak
accelerator memory per process (``reft.pipeline.estimate``). Writes nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reft.config import PPOConfig, RerankerConfig, SampleConfig, SelfTrainConfig
from reft.errors import UserError
from reft.pipeline.estimate import Estimate, Target, estimate, gib, model_dims
from reft.pipeline.spec import Pipeline, TinyModel, rerankers


@dataclass(frozen=True)
class Source:
    """One data source as the dry run sees it."""

    name: str
    rows: int | None
    """Examples (after max_examples), None when unknown without reading it."""
    where: str


def resolve_source(source: str, split: str, cap: int = 0) -> Source:
    """Rows and whereabouts of a data name, a local file or a Hugging Face dataset; nothing
    is downloaded. A missing file or an unknown name is a UserError."""
    from reft.data import fetch, hf

    rows, where = None, ""
    if fetch.is_name(source):
        item = fetch.entry(source)
        path = _cached(item)
        if path is not None:
            rows, where = len(hf.read_rows(str(path))[1]), f"cached: {path}"
        else:
            rows = item.rows
            where = ("not cached; offline mode is on, so the run would fail: "
                     f"reft data get {source}" if fetch.offline() else
                     "not cached: downloaded (and checked) by the first run")
    elif Path(source).expanduser().is_file():
        rows, where = len(hf.read_rows(source)[1]), "local file"
    elif Path(source).expanduser().is_dir():
        where = f"local dataset directory (split {split}; rows counted when it runs)"
    elif hf._looks_like_path(source):
        raise UserError(f"{source}: file not found")
    else:
        where = f"Hugging Face dataset (split {split}; rows counted when it runs)"
    if rows is not None and cap:
        rows = min(rows, cap)
    return Source(source, rows, where)


def _cached(item) -> Path | None:
    from reft.data import fetch

    if item.source != "hub":
        path = fetch.cache_path(item)
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(fetch.GSM8K_REPO, item.path, cache_dir=fetch._hub_cache(),
                                   revision=fetch.GSM8K_REVISION, repo_type="dataset")
    return Path(found) if isinstance(found, str) else None


def model_config(p: Pipeline) -> tuple[Any, str]:
    """(the model's transformers config, where it came from)."""
    if isinstance(p.model, TinyModel):
        from reft.models.tiny import PRESETS, build_config

        over = {k: v for k, v in dataclasses.asdict(p.model).items() if k != "init" and v is not None}
        sizes = {**PRESETS[p.model.init], **over}
        return build_config(**sizes), (f"reft model init, {p.model.init} preset (vocabulary at most "
                                        f"{sizes['vocab_size']}: BPE may learn fewer)")
    from huggingface_hub import constants
    from transformers import AutoConfig

    from reft.data import fetch

    local = Path(p.model).expanduser()
    offline = fetch.offline() or constants.HF_HUB_OFFLINE
    try:
        if local.is_dir():
            return AutoConfig.from_pretrained(str(local), local_files_only=True), f"local: {local}"
        config = AutoConfig.from_pretrained(p.model, local_files_only=offline)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        mode = " (offline mode is on: only the cache is read)" if offline else ""
        raise UserError(f"model {p.model}: cannot read its config{mode}: {first}") from None
    return config, "Hugging Face cache" if offline else "Hugging Face hub (or its cache)"


def _steps(n: int | None, global_batch: int, epochs: int, max_steps: int) -> int | None:
    """``reft.training.loop.total_steps``'s arithmetic (tests/test_dry_run.py keeps them equal;
    that module imports torch and the training loop)."""
    if n is None:
        return None
    per_epoch = math.ceil(n / global_batch)
    return per_epoch * epochs if not max_steps else min(max_steps, per_epoch * epochs)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _n(x: int | None) -> str:
    return "?" if x is None else f"{x:,}"


def describe(name: str, cfg: Any, n_train: int | None, n_test: int | None, t: Target,
             k: int = 0) -> tuple[str, str]:
    """(settings, steps) of a stage, as the command would run it with ``t.processes``."""
    world, s = t.processes, cfg
    common = f"lora_r {s.lora_r}, " if getattr(s, "lora_r", 0) else ""
    common += "gradient checkpointing, " if getattr(s, "gradient_checkpointing", False) else ""
    lr = f"lr {s.lr:g}" if getattr(s, "lr", None) else "lr auto"
    if name.endswith("eval"):
        return (f"k {s.k}, max_new_tokens {s.sampling.max_new_tokens}, gen_batch_size "
                f"{s.sampling.gen_batch_size}", f"{_n(n_test)} questions x {1 + (s.k > 0)} passes")
    if isinstance(s, SampleConfig):  # the warm-up's samples for the reward models
        return (f"k {s.k}, max_new_tokens {s.sampling.max_new_tokens}, gen_batch_size "
                f"{s.sampling.gen_batch_size}", f"{_n(n_train)} questions x {s.k} samples")
    if isinstance(s, PPOConfig):
        rl = _steps(n_train, s.rollout_batch_size * world, s.epochs, s.max_steps)
        per = s.ppo_epochs * math.ceil(s.rollout_batch_size * s.samples_per_question / s.mini_batch_size)
        opt = None if rl is None else rl * per
        return (f"{common}{lr}, epochs {s.epochs}, rollout {s.rollout_batch_size} x {world} questions"
                f" x {s.samples_per_question} samples, mini-batch {s.mini_batch_size}, ppo_epochs "
                f"{s.ppo_epochs}, max_new_tokens {s.sampling.max_new_tokens}, gen_batch_size "
                f"{s.sampling.gen_batch_size}, micro_batch_tokens {getattr(s, 'micro_batch_tokens', 0)}",
                f"{_n(rl)} RL steps, {_n(opt)} optimizer steps")
    if isinstance(s, SelfTrainConfig) and s.mode == "online":
        rl = _steps(n_train, s.rollout_batch_size * world, s.epochs, s.max_steps)
        return (f"online, {common}{lr}, epochs {s.epochs}, rollout {s.rollout_batch_size} x {world}, "
                f"batch {s.batch_size}, max_length {s.max_length}",
                f"{_n(rl)} steps, {_n(None if rl is None else rl * s.updates_per_batch)} optimizer steps")
    batch = s.batch_size * world * getattr(s, "grad_accum", 1)
    settings = (f"{common}{lr}, epochs {s.epochs}, batch {s.batch_size} x {world} processes x "
                f"{getattr(s, 'grad_accum', 1)} accumulation, max_length {s.max_length}")
    if isinstance(s, SelfTrainConfig):
        most = None if n_train is None else n_train * (1 + s.max_per_question)
        low, high = _steps(n_train, batch, s.epochs, s.max_steps), _steps(most, batch, s.epochs, s.max_steps)
        return (f"offline, k {s.k}, max_per_question {s.max_per_question}, {settings}",
                f"{_n(low)} to {_n(high)} optimizer steps (with 0 to {s.max_per_question} kept samples a question)")
    if isinstance(s, RerankerConfig):
        n_train = None if n_train is None else n_train * k
    return settings, f"{_n(_steps(n_train, batch, s.epochs, s.max_steps))} optimizer steps"


def stages(p: Pipeline) -> list[tuple[str, Any]]:
    """(name, config) of every stage after the model, in the order ``run_pipeline`` runs them."""
    out = [("warmup", p.configs["warmup"])] + [(m, p.configs[m]) for m in p.methods]
    own = rerankers(p)
    if own:
        out.append(("reranker", p.sample))  # the warm-up's samples of the training questions
    ev = p.configs["eval"]
    for name in ["warmup", *p.methods]:
        if name in own:
            out.append((f"{name}/reranker", own[name]))
        out.append((f"{name}/eval", ev))
    return out


def dry_run(p: Pipeline, t: Target) -> str:
    """The plan of ``p`` as text: data, model, stages, steps and memory per process."""
    config, origin = model_config(p)
    d = model_dims(config)
    # load_data caps each file, then their concatenation, at max_examples
    train = [resolve_source(f, p.data.hf_split, p.data.max_examples) for f in p.train_files]
    n_train = None if any(s.rows is None for s in train) else sum(s.rows for s in train)
    if n_train is not None and p.data.max_examples:
        n_train = min(n_train, p.data.max_examples)
    test = resolve_source(p.data.test_file, p.data.test_split, p.data.max_test_examples)
    kind = getattr(config, "model_type", "?")
    lines = [f"plan of {p.out}: nothing is written (the run would create {p.out})",
             f"target: {t.engine}, {t.processes} process(es) on {t.device}; prompts of up to "
             f"{t.prompt_tokens} tokens assumed, training rows at their max_length (upper bounds)",
             f"model: {p.model if isinstance(p.model, str) else 'tiny'} ({kind}, "
             f"{_size(d.n_params)} parameters; vocab {d.vocab}, hidden {d.hidden}, {d.layers} "
             f"layers, {d.heads} heads / {d.kv_heads} KV heads) - {origin}", "data:"]
    lines += [f"  train {s.name}: {_n(s.rows)} examples ({s.where})" for s in train]
    lines.append(f"  test {test.name}: {_n(test.rows)} examples ({test.where})")
    if p.data.max_examples:
        lines.append(f"  (the first {p.data.max_examples} of each training file)")
    rows, order = [], 1
    lines.append("stages:")
    if isinstance(p.model, TinyModel):
        lines.append(f"  {order}. model: reft model init on CPU (tokenizer trained on the training texts)")
        order += 1
    k = p.sample.k if p.sample else 0
    for name, cfg in stages(p):
        settings, steps = describe(name, cfg, n_train, test.rows, t, k)
        est = estimate(config, cfg, t)
        lines.append(f"  {order}. {name} ({type(cfg).__name__}): {settings}; {steps}")
        lines += [f"     note: {n}" for n in (*refusals(cfg, t), *est.notes)]
        rows.append((name, est))
        order += 1
    return "\n".join([*lines, "", memory_table(rows, t)])


def refusals(cfg: Any, t: Target) -> list[str]:
    """What reft refuses to run on ``t``'s engine (``runtime.dist.prepare_engine``,
    ``training.ppo_setup.check_ppo``, ``training.selftrain``)."""
    out = []
    if t.zero and getattr(cfg, "grad_accum", 1) > 1:
        out.append("DeepSpeed refuses --grad-accum > 1: launch with grad_accum 1 (the per-process "
                   "batch x processes is the global batch)")
    if t.zero and isinstance(cfg, SelfTrainConfig) and cfg.mode == "online":
        out.append("DeepSpeed refuses online self-training (several backward passes a step)")
    if t.engine == "zero3" and getattr(cfg, "lora_r", 0):
        out.append("ZeRO-3 refuses LoRA: use zero2")
    if t.engine == "zero3" and isinstance(cfg, PPOConfig) and cfg.critic == "separate":
        out.append("ZeRO-3 refuses --critic separate: use zero2")
    return out


def memory_table(rows: list[tuple[str, Estimate]], t: Target) -> str:
    """The estimates as a Markdown table in GiB (one decimal)."""
    head = ["stage", *(p.replace("_", " ") for p in Estimate.PARTS), "total", "peak in"]
    out = [f"estimated peak memory per process, GiB ({t.engine}, {t.processes} process(es), "
           f"{t.device}; total = weights + optimizer + reference + the largest phase):",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in rows:
        cells = [name, *(gib(getattr(e, part)) for part in Estimate.PARTS), gib(e.total), e.phase]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)
