"""The pipeline YAML: its sections, checking, and every stage's config resolved under OUT.

Nothing here imports torch; ``reft.pipeline`` re-exports the public names.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reft.config import (
    PROMPT_TEMPLATE,
    DataArgs,
    EvalConfig,
    PPOConfig,
    RerankerConfig,
    SampleConfig,
    SelfTrainConfig,
    SFTConfig,
    SourceArgs,
)
from reft.config.checks import COUNT0
from reft.configio import groups, leaves, make_config, read_yaml, to_dict
from reft.errors import UserError

METHODS = ("sft", "reft", "offline_st", "online_st")
SECTIONS: dict[str, type] = {
    "warmup": SFTConfig, "sft": SFTConfig, "reft": PPOConfig, "offline_st": SelfTrainConfig,
    "online_st": SelfTrainConfig, "eval": EvalConfig, "reranker": RerankerConfig,
}
MANAGED = ("model", "out", "resume", "train_file", "test_file", "val_file", "data_file", "samples",
           "mode", "cot", "task", "seed", "dtype", "template", "data_format", "columns", "hf_split",
           "max_examples")
"""Stage keys the pipeline fills in from its top-level keys and ``data:`` section."""


@dataclass(frozen=True)
class RunArgs:
    """Top-level keys of a pipeline YAML (besides model, data, methods and the stage sections)."""

    out: str = ""
    """Output directory (default: runs/<config file name without .yaml>)."""
    cot: str = "nl"
    """Chain-of-thought style: nl or python."""
    task: str = "numeric"
    """Answer type: numeric or mc (multiple-choice letter)."""
    seed: int = 0
    """Random seed of every stage."""
    dtype: str = "auto"
    """Model weights dtype: auto, float32, bfloat16, float16."""
    template: str = PROMPT_TEMPLATE
    """Prompt template; must contain {question}."""

    CHOICES = {k: DataArgs.CHOICES[k] for k in ("cot", "task", "dtype")}


@dataclass(frozen=True)
class DataSpec(SourceArgs):
    """The ``data:`` section (``hf_split``: the split used for training)."""

    train_file: str = ""
    """Training data: a file or Hugging Face dataset name (a YAML list of them is concatenated)."""
    test_file: str = ""
    """Test data: a file or Hugging Face dataset name; read only by the final evaluation."""
    val_file: str = ""
    """Validation data for ReFT's periodic top-1 (``reft: {eval_every: N}``); none: no periodic evaluation."""
    test_split: str = "test"
    """Split of a Hugging Face dataset used for testing."""
    max_examples: int = 0
    """Use only the first N training examples (0 = all)."""
    max_test_examples: int = 0
    """Use only the first N test examples (0 = all)."""

    BOUNDS = {"max_examples": COUNT0, "max_test_examples": COUNT0}


@dataclass(frozen=True)
class TinyModel:
    """``model: {init: tiny}``: reft's from-scratch Llama, tokenizer trained on the training texts."""

    init: str = "tiny"
    """Preset: tiny (~2M parameters) or small (~7M)."""
    vocab_size: int | None = None
    """Override the preset's vocabulary size (an upper bound for BPE)."""
    hidden_size: int | None = None
    """Override the hidden size."""
    layers: int | None = None
    """Override the number of layers."""
    heads: int | None = None
    """Override the number of attention heads."""
    max_positions: int | None = None
    """Override the longest sequence."""

    CHOICES = {"init": ("tiny", "small")}


@dataclass
class Pipeline:
    """A parsed pipeline YAML: every stage's config resolved (paths under ``out``)."""

    run: RunArgs
    model: str | TinyModel
    data: DataSpec
    train_files: tuple[str, ...]
    methods: tuple[str, ...]
    configs: dict[str, Any]
    """Section name -> its frozen stage config (``eval``: the template for every model)."""
    sample: SampleConfig | None = None
    """How the reranker's training samples are drawn (only with a ``reranker`` section)."""

    @property
    def out(self) -> Path:
        return Path(self.run.out)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(value).__name__}")
    return value


def _section(cls: type, raw: Any, fixed: dict[str, Any], where: str) -> Any:
    """``cls`` from a YAML section plus the pipeline's own values (which it may not set)."""
    raw = _mapping(raw, where)
    settable = sorted([*(n for n in leaves(cls) if n not in MANAGED), *groups(cls)])
    for key in raw:
        name = str(key).replace("-", "_")
        if name in MANAGED:
            raise UserError(f"{where}: '{key}' is set by the pipeline (from the top-level keys "
                            "and the data section); remove it here")
        if name not in settable:
            raise UserError(f"{where}: unknown key '{key}' for {cls.__name__} "
                            f"(known: {', '.join(settable)})")
    return make_config(cls, {**raw, **fixed}, where)


def _train_files(data: dict, where: str) -> tuple[str, ...]:
    files = data.get("train_file", "")
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise UserError(f"{where}: 'train_file' is required: a file or dataset name, or a list of them")
    return tuple(files)


def parse_pipeline(raw: dict, label: str, out: str | None = None) -> Pipeline:
    """Check a pipeline YAML mapping and resolve every stage config; UserError on any problem."""
    known = {"model", "data", "methods", *SECTIONS, *(f.name for f in dataclasses.fields(RunArgs))}
    for key in raw:
        if key not in known:
            raise UserError(f"{label}: unknown top-level key '{key}' (known: {', '.join(sorted(known))})")
    scalars = {k: v for k, v in raw.items() if k not in ("model", "data", "methods", *SECTIONS)}
    run = make_config(RunArgs, scalars, label)
    run = dataclasses.replace(run, out=out or run.out or f"runs/{Path(label).stem}")
    if "{question}" not in run.template:
        raise UserError(f"{label}: 'template' must contain {{question}}")
    model = raw.get("model")
    if isinstance(model, dict):
        model = make_config(TinyModel, model, f"{label}: model")
    elif not isinstance(model, str) or not model.strip():
        raise UserError(f"{label}: 'model' is required: a hub id or local directory, or {{init: tiny}}")
    data_raw = _mapping(raw.get("data"), f"{label}: data")
    files = _train_files(data_raw, f"{label}: data")
    data = make_config(DataSpec, {**data_raw, "train_file": files[0]}, f"{label}: data")
    if not data.test_file:
        raise UserError(f"{label}: data: 'test_file' is required")
    methods = raw.get("methods", ["sft", "reft"])
    methods = [methods] if isinstance(methods, str) else methods
    if not isinstance(methods, list) or any(m not in METHODS for m in methods):
        raise UserError(f"{label}: methods: must be a list of {', '.join(METHODS)}; got {methods!r}")
    p = Pipeline(run, model, data, files, tuple(dict.fromkeys(methods)), {})
    _resolve_configs(p, raw, label)
    return p


def _resolve_configs(p: Pipeline, raw: dict, label: str) -> None:
    out, d, r = p.out, p.data, p.run
    shared = dict(cot=r.cot, task=r.task, seed=r.seed, dtype=r.dtype, template=r.template,
                  data_format=d.data_format, columns=d.columns)
    train = dict(shared, train_file=",".join(p.train_files), hf_split=d.hf_split,
                 max_examples=d.max_examples)
    base = str(out / "model" / "final") if isinstance(p.model, TinyModel) else p.model
    warm = str(out / "warmup" / "final")
    fixed = {
        "warmup": dict(train, model=base, out=str(out / "warmup")),
        "sft": dict(train, model=warm, out=str(out / "sft")),
        "reft": dict(train, model=warm, out=str(out / "reft"), val_file=d.val_file),
        "offline_st": dict(train, model=warm, out=str(out / "offline_st"), mode="offline"),
        "online_st": dict(train, model=warm, out=str(out / "online_st"), mode="online"),
        "eval": dict(shared, model=warm, out=str(out / "warmup" / "eval"), test_file=d.test_file,
                     hf_split=d.test_split, max_examples=d.max_test_examples),
    }
    for name, values in fixed.items():
        p.configs[name] = _section(SECTIONS[name], raw.get(name), values, f"{label}: {name}")
    if "reranker" not in raw:
        return
    section = dict(_mapping(raw["reranker"], f"{label}: reranker"))
    sample_raw = section.pop("sample", None)
    # as the release (exps/paper_exps/Rerank): the warm-up samples the training questions once;
    # each evaluated model gets its own reward model, initialised from it and trained on them
    source = warm
    rdir = out / "reranker"
    p.configs["reranker"] = _section(RerankerConfig, section, dict(
        shared, model=source, out=str(out / "warmup" / "reranker"), samples=str(rdir / "samples.jsonl"),
        hf_split=d.hf_split, max_examples=d.max_examples), f"{label}: reranker")
    ev = p.configs["eval"]
    if ev.k < 1:
        raise UserError(f"{label}: reranker: rerank@k needs samples; set eval: k: to 1 or more")
    defaults = dict(k=ev.k, sampling=ev.sampling)
    p.sample = _section(SampleConfig, {**defaults, **_mapping(sample_raw, f"{label}: reranker")},
                        dict(shared, model=source, out=str(rdir / "samples.jsonl")),
                        f"{label}: reranker.sample")


def rerankers(p: Pipeline) -> dict[str, RerankerConfig]:
    """The reward model of each evaluated model (the warm-up, then each method) when the
    pipeline has a ``reranker`` section and ``eval.rerank`` names none: initialised from that
    model's ``final/``, trained on the warm-up's samples, written to ``OUT/<model>/reranker``."""
    if "reranker" not in p.configs or p.configs["eval"].rerank:
        return {}
    base = p.configs["reranker"]
    return {m: dataclasses.replace(base, model=str(p.out / m / "final"), out=str(p.out / m / "reranker"))
            for m in ("warmup", *p.methods)}


def load_pipeline(path: str | Path, out: str | None = None) -> Pipeline:
    """Read and check a pipeline YAML (nothing runs)."""
    return parse_pipeline(read_yaml(path), str(path), out)


def resolved_dict(p: Pipeline) -> dict:
    """The resolved pipeline config as plain data (what ``pipeline.yaml`` holds)."""
    model = dataclasses.asdict(p.model) if isinstance(p.model, TinyModel) else p.model
    data = {**dataclasses.asdict(p.data), "train_file": list(p.train_files)}
    out = {**dataclasses.asdict(p.run), "model": model, "data": data, "methods": list(p.methods)}
    for name, cfg in p.configs.items():
        out[name] = to_dict(cfg)
    if p.sample is not None:
        out["reranker"]["sample"] = to_dict(p.sample)
    return json.loads(json.dumps(out, default=str))
