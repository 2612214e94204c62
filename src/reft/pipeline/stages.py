"""The pipeline's stages (tiny model, training, reranker, evaluation), run in order."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from reft.config import EvalConfig, PPOConfig, SelfTrainConfig
from reft.configio import to_dict
from reft.errors import UserError
from reft.pipeline.runner import Runner, Stage, _read_json, _say
from reft.pipeline.spec import Pipeline, TinyModel, rerankers, resolved_dict

_DATA_KEYS = ("train_file", "data_format", "columns", "hf_split", "max_examples", "cot", "task",
              "template", "seed")


def load_data(p: Pipeline) -> tuple[list, list, list]:
    """(training examples with CoTs, test examples, validation examples: ReFT's periodic
    top-1), read once, before any stage, and shared by every stage."""
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
    val = load_examples(d.val_file, **kw) if d.val_file else []
    return train, test, val


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


def _training_stage(name: str, cfg: Any, train: list, deps: tuple[str, ...],
                    val: list | None = None) -> Stage:
    """A training stage; ``val``: the validation examples of ReFT's periodic top-1 (never
    the test set)."""
    def run(resume: bool) -> Path:
        c = dataclasses.replace(cfg, resume=resume)
        if isinstance(c, PPOConfig):
            from reft.training.ppo import train_ppo

            held_out = (val[: c.eval_examples] if c.eval_examples else val) if c.eval_every and val else []
            return train_ppo(c, train, held_out)
        if isinstance(c, SelfTrainConfig):
            from reft.training.selftrain import run_selftrain

            return run_selftrain(c, train)
        from reft.training.sft import train_sft

        return train_sft(c, train)

    return Stage(name, cfg, run, deps)


def _samples_stage(p: Pipeline, train: list) -> Stage:
    """The warm-up's samples of the training questions, which every reward model trains on."""
    scfg = p.sample

    def run(resume: bool) -> Path:
        from reft.models.loading import load_model, load_tokenizer, token_ids
        from reft.rollout.samples_file import run_sample

        model = load_model(scfg.model, dtype=scfg.dtype, device=_device())
        tokenizer = load_tokenizer(scfg.model, **token_ids(scfg))
        run_sample(scfg, train, model=model, tokenizer=tokenizer)
        return Path(scfg.out)

    return Stage("reranker", {"sample": scfg}, run, ("warmup",))


def _reranker_stage(name: str, rcfg: Any) -> Stage:
    """``name``'s reward model (``spec.rerankers``)."""
    def run(resume: bool) -> Path:
        from reft.training.reranker import train_reranker

        return train_reranker(dataclasses.replace(rcfg, resume=resume))

    return Stage(f"{name}/reranker", rcfg, run, (name, "reranker"))


def _eval_stage(name: str, cfg: EvalConfig, test: list, deps: tuple[str, ...]) -> Stage:
    def run(resume: bool) -> Path:
        import torch

        from reft.eval.runner import evaluate, load_reranker, write_eval
        from reft.models.loading import load_model, load_tokenizer, token_ids

        tokenizer = load_tokenizer(cfg.model, **token_ids(cfg))
        model = load_model(cfg.model, dtype=cfg.dtype, device=_device())
        rerank_fn = load_reranker(cfg.rerank) if cfg.rerank else None
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        summary, records = evaluate(model, tokenizer, test, cfg, cfg.k, rerank_fn)
        summary.update(k=cfg.k, wall_s=round(time.perf_counter() - t0, 2))
        write_eval(Path(cfg.out), summary, records, to_dict(cfg))
        return Path(cfg.out)

    return Stage(f"{name}/eval", cfg, run, deps)


def run_pipeline(p: Pipeline) -> dict:
    """Run (or resume) every stage, then write results.json and the report; returns the results."""
    import yaml

    from reft.report import write_report
    from reft.report.files import atomic_write
    from reft.runtime.dist import setup_threads
    from reft.runtime.io import write_json_atomic

    t0 = time.perf_counter()
    p.out.mkdir(parents=True, exist_ok=True)
    atomic_write(p.out / "pipeline.yaml", yaml.safe_dump(resolved_dict(p), sort_keys=False))
    if "reranker" in p.configs:
        try:  # fail now, not after hours of training
            from reft.training.reranker import train_reranker  # noqa: F401
        except ImportError as e:
            raise UserError(f"the reranker section needs 'reft reranker train' ({e})") from None
    setup_threads()
    train, test, val = load_data(p)
    _say(f"{len(train)} training and {len(test)} test examples; output in {p.out}")
    run = Runner(p.out)
    tiny = isinstance(p.model, TinyModel)
    if tiny:
        run(_tiny_stage(p, train))
    warm = _training_stage("warmup", p.configs["warmup"], train, ("model",) if tiny else ())
    warm.settings = {"config": warm.settings, "base_model": None if tiny else p.model}
    finals = {"warmup": run(warm)}
    for m in p.methods:
        finals[m] = run(_training_stage(m, p.configs[m], train, ("warmup",), val))
    ev, own = p.configs["eval"], rerankers(p)
    if own:
        run(_samples_stage(p, train))
    for name, final in finals.items():
        cfg = dataclasses.replace(ev, model=str(final), out=str(p.out / name / "eval"))
        deps: tuple[str, ...] = (name,)
        if name in own:
            cfg = dataclasses.replace(cfg, rerank=str(run(_reranker_stage(name, own[name]))))
            deps = (name, f"{name}/reranker")
        stage = _eval_stage(name, cfg, test, deps)
        stage.settings = {"config": cfg, "reward_model": None if name in own else cfg.rerank}
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
