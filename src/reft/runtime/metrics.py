"""Metrics: ``metrics.jsonl`` and TensorBoard events, and throughput."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch


class MetricsLogger:
    """metrics.jsonl + TensorBoard. Only the main process writes."""

    def __init__(self, run_dir: Path, enabled: bool = True, resume_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard drops the earlier run's points from that step on, as the
        # truncation above does for metrics.jsonl (else resumed steps show up twice)
        purge = resume_step + 1 if resume_step is not None else None
        self.writer = SummaryWriter(str(run_dir / "tb"), purge_step=purge)

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
        for k, v in row.items():
            if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
