"""What every training loop shares, written once: resume state, global batches, metrics,
phase timings, the non-finite guard and checkpoints.

A method's file (``sft.py``, ``ppo.py``, ``selftrain.py``, ``reranker.py``) sets up its
models and optimizer, then drives a ``Loop``::

    loop = Loop(cfg, acc, run_dir, total, "ppo", saver)
    for gb in loop.global_batches(len(train), global_batch):
        with loop.phase("sample"):
            ...
        loop.step_done(metrics)
    return loop.finish(final_saver)

and holds only what its method is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from reft.data.records import Example
from reft.errors import TrainingError
from reft.runtime.checkpoint import (
    TrainerState,
    last_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_final,
)
from reft.runtime.metrics import MetricsLogger


def epoch_batches(n: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled global batches of example indices, fixed by (seed, epoch) so resume is exact."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g).tolist()
    return [perm[i : i + global_batch] for i in range(0, n, global_batch)]


def load_train_examples(cfg, require_cot: bool = False) -> list[Example]:
    """``cfg.train_file`` read with the config's data settings."""
    from reft.data import load_examples

    return load_examples(cfg.train_file, data_format=cfg.data_format, columns=cfg.columns,
                         task=cfg.task, cot=cfg.cot, hf_split=cfg.hf_split,
                         max_examples=cfg.max_examples, require_cot=require_cot)


def total_steps(n_examples: int, global_batch: int, epochs: int, max_steps: int = 0) -> int:
    """Optimizer steps of a run: ``epochs`` passes of global batches, capped by ``max_steps``."""
    per_epoch = math.ceil(n_examples / global_batch)
    return per_epoch * epochs if not max_steps else min(max_steps, per_epoch * epochs)


def last_good(run_dir: Path) -> str:
    """Where the newest complete checkpoint of ``run_dir`` is, for messages."""
    ckpt = last_checkpoint(run_dir)
    return f"last good checkpoint: {ckpt}" if ckpt else "no checkpoint was written yet"


def check_finite(metrics: dict[str, float], step: int, run_dir: Path,
                 ignore: tuple[str, ...] = ()) -> None:
    """``TrainingError`` naming the step, the bad values and the last good checkpoint when a
    value of ``metrics`` (but those in ``ignore``) is NaN or infinite."""
    bad = [k for k, v in metrics.items() if k not in ignore and not math.isfinite(float(v))]
    if bad:
        values = ", ".join(f"{k}={float(metrics[k]):.4g}" for k in bad)
        raise TrainingError(f"step {step}: non-finite {values}; {last_good(run_dir)}")


class Loop:
    """One run's bookkeeping, resumed from the run's last checkpoint with ``cfg.resume``.

    ``saver(path)`` writes the model of a checkpoint (called on every process)."""

    def __init__(self, cfg, acc, run_dir: Path, total: int, desc: str,
                 saver: Callable[[Path], None]):
        self.cfg, self.acc, self.run_dir, self.total, self.saver = cfg, acc, run_dir, total, saver
        self.state = TrainerState()
        ckpt = last_checkpoint(run_dir) if cfg.resume else None
        if ckpt is not None:
            self.state = load_checkpoint(acc, ckpt)
        self.log = MetricsLogger(run_dir, acc.is_main_process, self.state.step if ckpt else None)
        self.bar = tqdm(total=total, initial=self.state.step, desc=desc, dynamic_ncols=True,
                        disable=not acc.is_main_process)
        self.times: dict[str, float] = {}

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.state.step

    def global_batches(self, n: int, size: int,
                       on_epoch_end: Callable[[], None] | None = None) -> Iterator[list[int]]:
        """The global batches of indices left to train on, ``size`` of ``n`` examples each,
        from where the run stands until ``total`` steps; ``on_epoch_end`` after each epoch.
        Call ``step_done`` once per batch."""
        st = self.state
        while st.step < self.total:
            for gb in epoch_batches(n, size, self.cfg.seed, st.epoch)[st.batch_in_epoch:]:
                if st.step >= self.total:
                    return
                yield gb
            st.epoch, st.batch_in_epoch = st.epoch + 1, 0
            if on_epoch_end is not None:
                on_epoch_end()

    @contextmanager
    def phase(self, name: str):
        """Time a phase of the step: adds to ``time/<name>_s`` of the step's metrics."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"time/{name}_s"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - t0

    def record(self, **seconds: float) -> None:
        """Add phase times measured elsewhere (``name=seconds``) to the step's metrics."""
        for name, t in seconds.items():
            key = f"time/{name}_s"
            self.times[key] = self.times.get(key, 0.0) + t

    def log_due(self) -> bool:
        """Whether the step being taken will be logged (every ``log_every`` and the last)."""
        nxt = self.state.step + 1
        return nxt % self.cfg.log_every == 0 or nxt == self.total

    def last_good(self) -> str:
        """Where the newest complete checkpoint is, for messages."""
        return last_good(self.run_dir)

    def check_finite(self, metrics: dict[str, float], ignore: tuple[str, ...] = ()) -> None:
        """Stop (``TrainingError``) when a value of ``metrics`` is NaN or infinite."""
        check_finite(metrics, self.state.step + 1, self.run_dir, ignore)

    def step_done(self, metrics: dict, log: bool | None = None,
                  postfix: dict[str, str] | None = None) -> None:
        """Count a finished step; log its metrics (with the phase timings) when due."""
        log = self.log_due() if log is None else log
        self.state.step += 1
        self.state.batch_in_epoch += 1
        if log:
            self.log.log(self.state.step, {**metrics, **self.times}, epoch=self.state.epoch + 1)
        self.times = {}
        if postfix is not None:
            self.bar.set_postfix(**postfix)
        self.bar.update(1)

    def save(self, name: str | None = None) -> Path:
        """A resumable checkpoint, ``checkpoints/<name>`` (default ``step-<step>``)."""
        return save_checkpoint(self.acc, self.run_dir, name or f"step-{self.state.step}",
                               self.state, self.saver)

    def finish(self, final_saver: Callable[[Path], None]) -> Path:
        """Close the logs and write ``final/`` with ``final_saver``."""
        self.bar.close()
        self.log.close()
        return save_final(self.acc, self.run_dir, final_saver)
