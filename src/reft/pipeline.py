"""``reft pipeline CONFIG.yaml``: the paper's protocol from one YAML file.

warm-up SFT -> the chosen methods, each from the warm-up's ``final/`` (continued SFT,
ReFT, offline/online self-training) -> optional reranker -> evaluation of every model,
the warm-up included, on the test set -> ``results.json`` -> ``results.md``,
``report.html`` and ``plots/``.

The output directory holds ``pipeline.yaml`` (the resolved config), one training run
directory per stage (``model/`` when the tiny model is built, ``warmup/``, ``sft/``,
``reft/``, ``offline_st/``, ``online_st/``, ``reranker/``), each with ``eval/``
(``eval.json``, ``predictions.jsonl``), then ``results.json`` and the report.

Rerunning resumes: a stage is finished once its ``DONE.json`` is written (atomically,
after the stage), and is skipped while its settings and those of the stages it starts
from are unchanged. A stage stopped midway continues from its checkpoints with its own
``resume``; without checkpoints it starts again from a clean directory. Paths in the
YAML are relative to the directory ``reft pipeline`` is run from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
)
from reft.configio import make_config, read_yaml, to_dict
from reft.errors import UserError

METHODS = ("sft", "reft", "offline_st", "online_st")
SECTIONS: dict[str, type] = {
    "warmup": SFTConfig, "sft": SFTConfig, "reft": PPOConfig, "offline_st": SelfTrainConfig,
    "online_st": SelfTrainConfig, "eval": EvalConfig, "reranker": RerankerConfig,
}
MANAGED = ("model", "out", "resume", "train_file", "test_file", "data_file", "samples", "mode",
           "cot", "task", "seed", "dtype", "template", "data_format", "columns", "hf_split",
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
class DataSpec:
    """The ``data:`` section."""

    train_file: str = ""
    """Training data: a file or Hugging Face dataset name (a YAML list of them is concatenated)."""
    test_file: str = ""
    """Test data: a file or Hugging Face dataset name."""
    data_format: str = "auto"
    """auto, gsm8k, reft or hf."""
    columns: str = ""
    """Column mapping for hf sources, e.g. 'question=problem,answer=solution'."""
    hf_split: str = "train"
    """Split of a Hugging Face dataset used for training."""
    test_split: str = "test"
    """Split of a Hugging Face dataset used for testing."""
    max_examples: int = 0
    """Use only the first N training examples (0 = all)."""
    max_test_examples: int = 0
    """Use only the first N test examples (0 = all)."""

    CHOICES = {"data_format": DataArgs.CHOICES["data_format"]}


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
    settable = sorted(f.name for f in dataclasses.fields(cls) if f.name not in MANAGED)
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
        "reft": dict(train, model=warm, out=str(out / "reft"), test_file=d.test_file),
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
    source = str(out / ("sft" if "sft" in p.methods else "warmup") / "final")
    rdir = out / "reranker"
    p.configs["reranker"] = _section(RerankerConfig, section, dict(
        shared, model=source, out=str(rdir), samples=str(rdir / "samples.jsonl"),
        hf_split=d.hf_split, max_examples=d.max_examples), f"{label}: reranker")
    ev = p.configs["eval"]
    if ev.k < 1:
        raise UserError(f"{label}: reranker: rerank@k needs samples; set eval: k: to 1 or more")
    defaults = dict(k=ev.k, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature,
                    batch_size=ev.batch_size, timeout_s=ev.timeout_s)
    p.sample = _section(SampleConfig, {**defaults, **_mapping(sample_raw, f"{label}: reranker")},
                        dict(shared, model=source, out=str(rdir / "samples.jsonl")),
                        f"{label}: reranker.sample")
    if not ev.rerank:
        p.configs["eval"] = dataclasses.replace(ev, rerank=str(rdir / "final"))


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


# ---------------------------------------------------------------------------- running


@dataclass
class Stage:
    """One unit of work with a directory under OUT, resumable and skippable."""

    name: str
    """Also its directory under OUT (``reft``, ``reft/eval``)."""
    settings: Any
    """What its result depends on (fingerprinted without the paths derived from OUT)."""
    run: Callable[[bool], Path]
    """``run(resume)`` -> its final output path."""
    deps: tuple[str, ...] = ()


@dataclass
class Runner:
    """Runs stages in order, skipping finished ones and resuming interrupted ones."""

    out: Path
    fingerprints: dict[str, str] = field(default_factory=dict)
    done: dict[str, dict] = field(default_factory=dict)

    def fingerprint(self, stage: Stage) -> str:
        payload = {"settings": _portable(stage.settings),
                   "deps": [self.fingerprints[d] for d in stage.deps]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def __call__(self, stage: Stage) -> Path:
        from reft.training.common import write_json_atomic

        d, fp = self.out / stage.name, self.fingerprint(stage)
        done = _read_json(d / "DONE.json")
        if done and done.get("fingerprint") == fp and (self.out / done["final"]).exists():
            _say(f"{stage.name}: skipped (finished earlier in {done['wall_s']:.1f} s)")
            return self._finish(stage.name, done)
        started = _read_json(d / "STARTED.json")
        resume = not done and started.get("fingerprint") == fp and _has_progress(d)
        if d.exists() and not resume:
            if done.get("fingerprint") == fp:
                _say(f"{stage.name}: its output {done['final']} is missing; starting it again")
            elif done or started:
                _say(f"{stage.name}: settings or an earlier stage changed; starting it again")
            shutil.rmtree(d)
        d.mkdir(parents=True, exist_ok=True)
        write_json_atomic(d / "STARTED.json", {"fingerprint": fp})
        _say(f"{stage.name}: {'resuming from its checkpoints' if resume else 'started'}")
        t0 = time.perf_counter()
        final = stage.run(resume)
        _free_memory()  # the next stage loads its own copy of the model
        wall = round(time.perf_counter() - t0, 2)
        done = {"stage": stage.name, "wall_s": wall, "final": str(_relative(final, self.out)),
                "fingerprint": fp, "resumed": resume, "finished_at": time.time()}
        write_json_atomic(d / "DONE.json", done)
        _say(f"{stage.name}: finished in {wall:.1f} s")
        return self._finish(stage.name, done)

    def _finish(self, name: str, done: dict) -> Path:
        # later stages depend on this run of the stage, not only on its settings: when it
        # runs again (even with the same settings) everything built on it runs again too
        self.fingerprints[name] = f"{done['fingerprint']}@{done.get('finished_at')}"
        self.done[name] = done
        return self.out / done["final"]


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _say(msg: str) -> None:
    print(f"pipeline: {msg}", flush=True)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _relative(path: Path, out: Path) -> Path:
    try:
        return Path(path).resolve().relative_to(out.resolve())
    except ValueError:
        return Path(path).resolve()


def _portable(value: Any) -> Any:
    """Settings without the paths the pipeline derives from OUT (the deps stand for those),
    so a moved or renamed OUT keeps its stages finished."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items() if k not in _DERIVED}
    if isinstance(value, list | tuple):
        return [_portable(v) for v in value]
    return value


_DERIVED = ("out", "resume", "model", "samples", "rerank")
_DATA_KEYS = ("train_file", "data_format", "columns", "hf_split", "max_examples", "cot", "task",
              "template", "seed")


def _has_progress(d: Path) -> bool:
    """Anything a stage's own resume can continue from: checkpoints or a samples file."""
    if any(d.glob("**/checkpoints/*/trainer_state.json")):
        return True
    return any(f.stat().st_size > 0 for f in d.glob("**/samples.jsonl"))


def load_data(p: Pipeline) -> tuple[list, list]:
    """(training examples with CoTs, test examples), read once and shared by every stage."""
    from reft.data import load_examples

    d, r = p.data, p.run
    kw = dict(data_format=d.data_format, columns=d.columns, task=r.task, cot=r.cot)
    train = []
    for i, source in enumerate(p.train_files):
        part = load_examples(source, hf_split=d.hf_split, max_examples=d.max_examples,
                             require_cot=True, **kw)
        if len(p.train_files) > 1:  # ids must stay unique: self-training matches samples by id
            part = [dataclasses.replace(e, id=f"{i}:{e.id}") for e in part]
        train += part
    if d.max_examples:
        train = train[: d.max_examples]
    test = load_examples(d.test_file, hf_split=d.test_split, max_examples=d.max_test_examples, **kw)
    return train, test


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None  # run_eval/run_sample would use CPU


def _tiny_stage(p: Pipeline, train: list) -> Stage:
    from reft.data.prompts import build_prompt, build_target
    from reft.models.tiny import init_model

    spec, r = p.model, p.run
    texts = [build_prompt(e.question, cot=r.cot, template=r.template) + build_target(e, cot=r.cot)
             for e in train]
    sizes = {k: v for k, v in dataclasses.asdict(spec).items() if k != "init"}

    def run(resume: bool) -> Path:
        return init_model(p.out / "model" / "final", preset=spec.init, texts=texts, seed=r.seed, **sizes)

    # the tokenizer depends on the training texts: the warm-up's data settings say which
    data = {k: v for k, v in dataclasses.asdict(p.configs["warmup"]).items() if k in _DATA_KEYS}
    return Stage("model", {"spec": spec, "data": data}, run)


def _training_stage(name: str, cfg: Any, train: list, test: list, deps: tuple[str, ...]) -> Stage:
    def run(resume: bool) -> Path:
        c = dataclasses.replace(cfg, resume=resume)
        if isinstance(c, PPOConfig):
            from reft.training.ppo import train_ppo

            held_out = (test[: c.eval_examples] if c.eval_examples else test) if c.eval_every else []
            return train_ppo(c, train, held_out)
        if isinstance(c, SelfTrainConfig):
            from reft.training.selftrain import run_selftrain

            return run_selftrain(c, train)
        from reft.training.sft import train_sft

        return train_sft(c, train)

    return Stage(name, cfg, run, deps)


def _reranker_stage(p: Pipeline, train: list, source: str) -> Stage:
    rcfg, scfg = p.configs["reranker"], p.sample

    def run(resume: bool) -> Path:
        from reft.models.loading import load_model, load_tokenizer
        from reft.rollout.sample_cmd import run_sample
        from reft.training.reranker import train_reranker

        model = load_model(scfg.model, dtype=scfg.dtype, device=_device())
        run_sample(scfg, train, model=model, tokenizer=load_tokenizer(scfg.model))
        del model
        return train_reranker(dataclasses.replace(rcfg, resume=resume))

    return Stage("reranker", {"reranker": rcfg, "sample": scfg}, run, (source,))


def _eval_stage(name: str, cfg: EvalConfig, test: list, deps: tuple[str, ...]) -> Stage:
    def run(resume: bool) -> Path:
        import torch

        from reft.eval.runner import EvalSettings, evaluate, load_reranker, write_eval
        from reft.models.loading import load_model, load_tokenizer

        tokenizer = load_tokenizer(cfg.model)
        model = load_model(cfg.model, dtype=cfg.dtype, device=_device())
        rerank_fn = load_reranker(cfg.rerank) if cfg.rerank else None
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        summary, records = evaluate(model, tokenizer, test, EvalSettings.from_config(cfg), rerank_fn)
        summary.update(k=cfg.k, wall_s=round(time.perf_counter() - t0, 2))
        write_eval(Path(cfg.out), summary, records, to_dict(cfg))
        return Path(cfg.out)

    return Stage(f"{name}/eval", cfg, run, deps)


def run_pipeline(p: Pipeline) -> dict:
    """Run (or resume) every stage, then write results.json and the report; returns the results."""
    import yaml

    from reft.report import write_report
    from reft.report.files import atomic_write
    from reft.training.common import setup_threads, write_json_atomic

    t0 = time.perf_counter()
    p.out.mkdir(parents=True, exist_ok=True)
    atomic_write(p.out / "pipeline.yaml", yaml.safe_dump(resolved_dict(p), sort_keys=False))
    if "reranker" in p.configs:
        try:  # fail now, not after hours of training
            from reft.training.reranker import train_reranker  # noqa: F401
        except ImportError as e:
            raise UserError(f"the reranker section needs 'reft reranker train' ({e})") from None
    setup_threads()
    train, test = load_data(p)
    _say(f"{len(train)} training and {len(test)} test examples; output in {p.out}")
    run = Runner(p.out)
    tiny = isinstance(p.model, TinyModel)
    if tiny:
        run(_tiny_stage(p, train))
    warm = _training_stage("warmup", p.configs["warmup"], train, test, ("model",) if tiny else ())
    warm.settings = {"config": warm.settings, "base_model": None if tiny else p.model}
    finals = {"warmup": run(warm)}
    for m in p.methods:
        finals[m] = run(_training_stage(m, p.configs[m], train, test, ("warmup",)))
    ev, rerank_dep = p.configs["eval"], ()
    if "reranker" in p.configs:
        source = "sft" if "sft" in p.methods else "warmup"
        rerank = run(_reranker_stage(p, train, source))
        ev, rerank_dep = dataclasses.replace(ev, rerank=str(rerank)), ("reranker",)
    for name, final in finals.items():
        cfg = dataclasses.replace(ev, model=str(final), out=str(p.out / name / "eval"))
        stage = _eval_stage(name, cfg, test, (name, *rerank_dep))
        stage.settings = {"config": cfg, "reward_model": None if rerank_dep else cfg.rerank}
        run(stage)
    results = collect_results(p, run, list(finals), len(test))
    write_json_atomic(p.out / "results.json", results)
    written = write_report(p.out)
    _say(f"done in {time.perf_counter() - t0:.1f} s: {written['results.md']}, {written['report.html']}")
    return results


def collect_results(p: Pipeline, run: Runner, evaluated: list[str], n_test: int) -> dict:
    """results.json: accuracies per method, the run's settings, and each stage's wall time.

    ``wall_s`` is the sum over stages of the time each took when it ran (stages skipped on
    a rerun count with their earlier time), i.e. what the whole table cost.
    """
    from reft.report.runs import ACCURACY_KEYS

    methods = {}
    for name in evaluated:
        ev = _read_json(p.out / name / "eval" / "eval.json")
        methods[name] = {k: ev[k] for k in ACCURACY_KEYS if k in ev}
    stages = {}
    for name, done in run.done.items():
        if not name.endswith("/eval"):
            info = {"run_dir": name, "wall_s": done["wall_s"]}
            if f"{name}/eval" in run.done:
                info["eval_wall_s"] = run.done[f"{name}/eval"]["wall_s"]
            stages[name] = info
    return {"methods": methods, "n_test": n_test, "seed": p.run.seed,
            "wall_s": round(sum(d["wall_s"] for d in run.done.values()), 2),
            "k": p.configs["eval"].k, "stages": stages}


def main(args) -> int:
    """``reft pipeline CONFIG.yaml`` (``args.out``, when the CLI has it, overrides ``out:``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # the evaluation and sampling stages are single-process; N copies would race
        raise UserError("reft pipeline runs as one process: start it with 'reft pipeline', not "
                        "under accelerate launch or torchrun (the stage commands can be)")
    p = load_pipeline(args.config, getattr(args, "out", None))
    run_pipeline(p)
    return 0
