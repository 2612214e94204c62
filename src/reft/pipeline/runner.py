"""Running pipeline stages: each resumable, and skipped once finished with unchanged settings."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
        from reft.runtime.io import write_json_atomic

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


def _has_progress(d: Path) -> bool:
    """Anything a stage's own resume can continue from: checkpoints or a samples file."""
    if any(d.glob("**/checkpoints/*/trainer_state.json")):
        return True
    return any(f.stat().st_size > 0 for f in d.glob("**/samples.jsonl"))
