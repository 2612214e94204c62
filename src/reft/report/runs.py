"""Recognising a run directory and loading what a report needs from it.

Three layouts are understood (and a folder of whole runs, one per seed: ``report.seeds``):

* pipeline/demo: ``results.json`` (``methods``, ``n_test``, ``k``, ``seed``, ``wall_s``,
  optional ``stages``) and one training run directory per stage;
* training run (SFT or PPO): ``config.yaml``, ``metrics.jsonl``, optional ``eval/eval.json``;
* evaluation: ``eval.json`` (+ ``predictions.jsonl``).

A folder without ``results.json`` whose subfolders are training runs (a pipeline still
running) is read as a pipeline whose table comes from the stages' own evaluations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reft.errors import UserError
from reft.report.files import read_json_object, read_jsonl, read_yaml

METHOD_ORDER = ("warmup", "sft", "offline_st", "online_st", "reft")
"""Table and legend order: the paper's baselines first, ReFT last."""
METHOD_NAMES = {
    "warmup": "Warm-up",
    "sft": "SFT",
    "offline_st": "Offline self-training",
    "online_st": "Online self-training",
    "reft": "ReFT",
}
ACCURACY_KEYS = ("top1", "vote@k", "pass@k", "rerank@k")


def display_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def method_order(names) -> list[str]:
    """Known methods in paper order, then the rest in their given order."""
    names = list(names)
    known = [m for m in METHOD_ORDER if m in names]
    return known + [m for m in names if m not in METHOD_ORDER]


@dataclass
class Stage:
    """One training run: its logged metrics, config and (optional) evaluation."""

    name: str
    path: Path
    metrics: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    eval: dict | None = None
    wall_s: float | None = None
    seed: object = None
    """The seed of the run the stage belongs to, in a report over several seeds."""


@dataclass
class Run:
    """Everything a report shows: the results table, the stages' curves and settings."""

    path: Path
    kind: str
    """"pipeline", "training", "eval" or "seeds" (several runs, ``report.seeds``)."""
    results: dict
    """Shaped like a pipeline's results.json: ``methods`` plus ``n_test``/``k``/``seed``/``wall_s``."""
    stages: list[Stage] = field(default_factory=list)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    """Section title -> flat ``key: value`` strings."""
    seed_runs: list[Run] = field(default_factory=list)
    """For kind "seeds" (``reft.report.seeds``): the runs, one per seed."""


def load_stage(path: Path, name: str | None = None) -> Stage:
    stage = Stage(name=name or path.name, path=path)
    if (path / "metrics.jsonl").is_file():
        stage.metrics = read_jsonl(path / "metrics.jsonl")
    if (path / "config.yaml").is_file():
        stage.config = read_yaml(path / "config.yaml")
    if (path / "eval" / "eval.json").is_file():
        stage.eval = read_json_object(path / "eval" / "eval.json")
    return stage


def last_value(rows: list[dict], key: str) -> float | None:
    """The last numeric value logged under ``key``."""
    for row in reversed(rows):
        value = row.get(key)
        if is_number(value):
            return float(value)
    return None


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def stage_accuracy(stage: Stage) -> dict:
    """A test-accuracy table row for a stage: its eval.json. (The periodic ``eval/top1`` of a
    PPO run is validation accuracy: it is among the final training metrics, not here.)"""
    return {k: stage.eval[k] for k in ACCURACY_KEYS if stage.eval and k in stage.eval}


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings as ``a.b: value`` strings (lists and other values as JSON)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def _is_training_dir(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file() or (path / "eval" / "eval.json").is_file()


def _pipeline_stages(run_dir: Path, results: dict) -> list[Stage]:
    stages: dict[Path, Stage] = {}
    declared = results.get("stages")
    for name, info in (declared.items() if isinstance(declared, dict) else ()):
        info = info if isinstance(info, dict) else {}
        path = run_dir / str(info.get("run_dir", name))
        if path.is_dir() and path.resolve() not in stages:
            stage = load_stage(path, name)
            stage.wall_s = info["wall_s"] if is_number(info.get("wall_s")) else None
            stages[path.resolve()] = stage
    for child in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name != "plots"):
        if (child / "metrics.jsonl").is_file() and child.resolve() not in stages:
            stages[child.resolve()] = load_stage(child)
    by_name = {s.name: s for s in stages.values()}
    return [by_name[n] for n in method_order(by_name)]


def _load_pipeline(run_dir: Path, results: dict | None) -> Run:
    stages = _pipeline_stages(run_dir, results or {})
    if results is None:
        methods = {s.name: row for s in stages if (row := stage_accuracy(s))}
        results = {"methods": methods}
    elif not isinstance(results.get("methods", {}), dict):
        raise UserError(f"{run_dir / 'results.json'}: 'methods' must be an object")
    run_info = {k: v for k, v in results.items() if k not in ("methods", "stages")}
    settings = {"Run": flatten(run_info)} if run_info else {}
    if (run_dir / "config.yaml").is_file():
        settings["Config"] = flatten(read_yaml(run_dir / "config.yaml"))
    for stage in stages:
        if stage.config:
            settings[f"{display_name(stage.name)} config"] = flatten(stage.config)
    return Run(run_dir, "pipeline", results, stages, settings)


def _load_training(run_dir: Path) -> Run:
    stage = load_stage(run_dir)
    row = stage_accuracy(stage)
    results: dict = {"methods": {stage.name: row} if row else {}}
    if stage.eval:
        results.update({k: stage.eval[k] for k in ("n", "k") if k in stage.eval})
        if "n" in results:
            results["n_test"] = results.pop("n")
    if "seed" in stage.config:
        results["seed"] = stage.config["seed"]
    settings = {"Config": flatten(stage.config)} if stage.config else {}
    if stage.eval and isinstance(stage.eval.get("settings"), dict):
        settings["Evaluation"] = flatten(stage.eval["settings"])
    return Run(run_dir, "training", results, [stage], settings)


def _load_eval(run_dir: Path) -> Run:
    data = read_json_object(run_dir / "eval.json")
    results: dict = {"methods": {run_dir.name: {k: data[k] for k in ACCURACY_KEYS if k in data}}}
    if "n" in data:
        results["n_test"] = data["n"]
    results.update({key: data[key] for key in ("k", "wall_s") if key in data})
    settings = data.get("settings")
    return Run(run_dir, "eval", results, [],
               {"Evaluation": flatten(settings)} if isinstance(settings, dict) else {})


def load_run(run_dir: str | Path) -> Run:
    """Load a pipeline/demo, training or evaluation directory; ``UserError`` otherwise."""
    path = Path(run_dir)
    if not path.exists():
        raise UserError(f"run directory not found: {path}")
    if not path.is_dir():
        raise UserError(f"not a directory: {path}")
    if (path / "results.json").is_file():
        return _load_pipeline(path, read_json_object(path / "results.json"))
    if _is_training_dir(path):
        return _load_training(path)
    if (path / "eval.json").is_file():
        return _load_eval(path)
    if any(p.is_dir() and (p / "metrics.jsonl").is_file() for p in path.iterdir()):
        return _load_pipeline(path, None)
    raise UserError(f"{path} holds no results.json, metrics.jsonl or eval.json: "
                    "not a reft run directory")
