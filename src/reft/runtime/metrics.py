"""Metrics: ``metrics.jsonl`` always, plus TensorBoard events or a Weights & Biases run
(``--report-to``), and throughput."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any

import torch

from reft.errors import UserError
from reft.runtime.io import write_atomic

REPORT_TO = ("tensorboard", "wandb", "none")
WANDB_ID_FILE = "wandb_run_id.txt"
"""In the run directory: the W&B run id, so a resumed run appends to the same W&B run."""


class MetricsLogger:
    """metrics.jsonl + the ``report_to`` backend (``tensorboard``: ``RUN/tb``; ``wandb``: a
    W&B run named after the run directory, ``config`` as its config; ``none``). Only the
    main process writes. Every backend gets the same keys at the same steps."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int | None = None,
                 report_to: str = "tensorboard", config: Any = None):
        if report_to not in REPORT_TO:
            raise UserError(f"--report-to must be one of {', '.join(REPORT_TO)}, got {report_to!r}")
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        self.wandb_run = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard drops the earlier run's points from that step on, as the
            # truncation above does for metrics.jsonl (else resumed steps show up twice)
            purge = resume_step + 1 if resume_step is not None else None
            self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)
        elif report_to == "wandb":
            self.wandb_run = start_wandb(run_dir, config, resume=resume_step is not None)

    def _truncate_after(self, step: int) -> None:
        """Drop lines logged after the checkpoint we resume from (they will be redone), and
        a torn last line left by a killed run."""
        keep = []
        for ln in self.path.read_text().splitlines():
            try:
                row = json.loads(ln)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and row.get("step", step + 1) <= step:
                keep.append(ln)
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def log(self, step: int, metrics: dict[str, float], **extra: Any) -> None:
        if not self.enabled:
            return
        row = {"step": step, **extra, **{k: _num(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        scalars = {k: v for k, v in row.items() if k != "step" and isinstance(v, int | float)
                   and not isinstance(v, bool) and math.isfinite(v)}
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, step)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _import_wandb():
    try:
        import wandb
    except ImportError:
        raise UserError("--report-to wandb needs Weights & Biases, which is not installed: "
                        "pip install 'reft[wandb]'") from None
    return wandb


def _config_dict(config: Any) -> dict:
    """A config dataclass (or mapping) as plain JSON-friendly values for the W&B run config."""
    if config is None:
        return {}
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return json.loads(json.dumps(data, default=str))


def start_wandb(run_dir: Path, config: Any = None, resume: bool = False):
    """A W&B run for ``run_dir``: named after it, ``config`` as its config, files under
    ``$WANDB_DIR`` (else the run directory). Its id is kept in ``RUN/wandb_run_id.txt``;
    on resume the run with that id is continued, else a new id is written."""
    wandb = _import_wandb()
    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else ""
    if not run_id:
        run_id = uuid.uuid4().hex[:16]
        write_atomic(id_file, run_id + "\n")
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "reft"),
                      name=run_dir.resolve().name, id=run_id, resume="allow",
                      dir=os.environ.get("WANDB_DIR") or str(run_dir),
                      config=_config_dict(config))


def _num(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item()
    return v


class Throughput:
    """Tokens per second over the last logging window."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.tokens = 0

    def add(self, n: int) -> None:
        self.tokens += n

    def rate(self) -> float:
        now = time.perf_counter()
        r = self.tokens / max(now - self.t0, 1e-9)
        self.t0, self.tokens = now, 0
        return r
