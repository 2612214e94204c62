"""What every training loop shares, written once: resume state, global batches, metrics,
phase timings, the non-finite guards, checkpoints and signals.

A method's file (``sft.py``, ``ppo.py``, ``selftrain.py``, ``reranker.py``) sets up its
models and optimizer, then drives a ``Loop``::

    with Loop(cfg, acc, run_dir, total, "ppo", saver, module=lm) as loop:
        for gb in loop.global_batches(len(train), global_batch):
            with loop.phase("sample"):
                ...
            loop.apply_update(params, opt)  # clip; skip a non-finite step
            loop.step_done(metrics)
        return loop.finish(final_saver)

and holds only what its method is.

Never keeping poison: an optimizer step whose gradient norm is NaN/inf (on any process) is
skipped and counted (``optim/skipped_steps``); ``--max-bad-steps`` of them in a row stop
the run (``TrainingError``, exit status 1, naming the last good checkpoint). A non-finite
*loss* is such a step too (its gradients are not finite; PPO checks the loss itself and
skips the backward pass). A checkpoint or ``final/`` is written only when every trainable
weight and optimizer state is finite.
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
    nonfinite_state,
    read_state,
    rotate_checkpoints,
    save_checkpoint,
    save_final,
)
from reft.runtime.io import remove_stale
from reft.runtime.metrics import MetricsLogger
from reft.runtime.resume import check_resume, command_of, record_resume, run_record, stage_of
from reft.runtime.signals import Interrupted, StopSignals, signal_name


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

    ``saver(path)`` writes the model of a checkpoint (called on every process); ``module``
    is the model it writes (default: the one prepared model), whose weights a checkpoint
    then stores once (``reft.runtime.weights``); ``run_cfg`` is the config checkpoints record
    and ``--resume`` checks (default ``cfg``); ``epoch_saves``: a checkpoint ``epoch-<n>`` at
    each epoch's end. Besides, ``global_batches`` saves ``step-<n>`` every ``save_every``
    steps, keeps the newest ``save_total_limit`` and turns SIGTERM/SIGINT into a saved
    checkpoint and ``Interrupted`` (exit status 143/130).

    Use it as a context manager (``with Loop(...) as loop:``): leaving the block, by
    ``finish`` or an error, restores the signal handlers and closes the logs."""

    def __init__(self, cfg, acc, run_dir: Path, total: int, desc: str,
                 saver: Callable[[Path], None], *, module=None, run_cfg=None,
                 epoch_saves: bool = False):
        self.cfg, self.acc, self.run_dir, self.total, self.saver = cfg, acc, run_dir, total, saver
        self.run_cfg = run_cfg if run_cfg is not None else cfg
        models = getattr(acc, "_models", [])
        self.module = module if module is not None or len(models) != 1 else models[0]
        self.epoch_saves = epoch_saves
        self.state = TrainerState()
        self.saved: tuple[int, Path] | None = None
        """(step, path) of the newest checkpoint this run wrote or resumed from."""
        self.bad_in_row = 0
        if acc.is_main_process:  # what a killed checkpoint write left
            remove_stale(run_dir / "checkpoints")
            remove_stale(run_dir)
        ckpt = last_checkpoint(run_dir) if cfg.resume else None
        if ckpt is not None:
            self._resume(ckpt)
        self.log = MetricsLogger(run_dir, acc.is_main_process, self.state.step if ckpt else None,
                                 report_to=cfg.report_to, config=cfg)
        self.bar = tqdm(total=total, initial=self.state.step, desc=desc, dynamic_ncols=True,
                        disable=not acc.is_main_process)
        self.times: dict[str, float] = {}
        self.signals = StopSignals(lambda s: f"{signal_name(s)} again: stopped during step "
                                             f"{self.state.step + 1}; {self.last_good()}")

    def _resume(self, ckpt: Path) -> None:
        changes = check_resume(self.run_cfg, ckpt, read_state(ckpt).get("run"))
        self.state = load_checkpoint(self.acc, ckpt, self.module)
        self.saved = (self.state.step, ckpt)
        if self.acc.is_main_process:
            record_resume(self.run_dir, ckpt, self.state.step, changes)

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc) -> None:
        self.signals.restore()
        self.close()

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return self.state.step

    def global_batches(self, n: int, size: int) -> Iterator[list[int]]:
        """The global batches of indices left to train on, ``size`` of ``n`` examples each,
        from where the run stands until ``total`` steps. Call ``step_done`` once per batch;
        after each, the checkpoints due are written and a pending signal stops the run."""
        st = self.state
        self.signals.install()
        try:
            while st.step < self.total:
                batches = epoch_batches(n, size, self.cfg.seed, st.epoch)
                if st.batch_in_epoch >= len(batches):  # saved at an epoch's end by an older reft
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                    continue
                for gb in batches[st.batch_in_epoch:]:
                    if st.step >= self.total:
                        return
                    yield gb
                    epoch_end = st.batch_in_epoch >= len(batches)
                    if epoch_end:
                        st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                    self._after_step(epoch_end)
        finally:
            self.signals.restore()

    def _after_step(self, epoch_end: bool) -> None:
        if epoch_end and self.epoch_saves:
            self.save(f"epoch-{self.state.epoch}")
        elif self.state.step % self.cfg.save_every == 0 and self.state.step < self.total:
            self.save()
        signum = self._signalled()
        if signum:
            ckpt = self.checkpoint()
            self.signals.restore()
            raise Interrupted(signum, f"{signal_name(signum)} after step {self.state.step}: "
                              f"checkpoint {ckpt}; continue with the same command plus --resume "
                              f"({command_of(stage_of(self.run_cfg))} ... --out {self.run_dir} --resume)")

    def _signalled(self) -> int:
        """The signal received (on any process), else 0."""
        got = torch.tensor(self.signals.received or 0, device=self.acc.device)
        return int(self.acc.reduce(got, "sum").item()) if self.acc.num_processes > 1 else int(got)

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

    def apply_update(self, params, opt, sched=None, detail: str = "") -> bool:
        """Clip the gradients, then step ``opt`` unless their norm is NaN or infinite on any
        process: then the step is skipped (``skipped``). ``sched`` steps either way, the
        gradients are zeroed. Returns whether the weights were updated."""
        norm = self.acc.clip_grad_norm_(params, self.cfg.max_grad_norm)
        ok = self.all_finite(norm)
        if ok:
            opt.step()
        if sched is not None:
            sched.step()
        opt.zero_grad(set_to_none=True)
        if ok:
            self.bad_in_row = 0
        else:
            self.skipped(f"non-finite gradient norm ({float(norm):.4g}{detail and '; ' + detail})")
        return ok

    def all_finite(self, value) -> bool:
        """Whether ``value`` (a number or tensor; None: unknown, e.g. DeepSpeed's clipping)
        is finite on every process."""
        ok = value is None or math.isfinite(float(value))
        if self.acc.num_processes == 1:
            return ok
        flag = torch.tensor(float(ok), device=self.acc.device)
        return self.acc.reduce(flag, "sum").item() == self.acc.num_processes

    def skipped(self, reason: str) -> None:
        """Count an optimizer step skipped for ``reason`` (``optim/skipped_steps``); the
        ``max_bad_steps``-th in a row stops the run (``TrainingError``)."""
        self.state.skipped_steps += 1
        self.bad_in_row += 1
        step, n, limit = self.state.step + 1, self.bad_in_row, self.cfg.max_bad_steps
        if n >= limit:
            raise TrainingError(f"step {step}: {reason}; {n} bad optimizer step{'s' * (n > 1)} in a "
                                f"row (--max-bad-steps {limit}); {self.last_good()}")
        if self.acc.is_main_process:
            tqdm.write(f"warning: step {step}: optimizer step skipped: {reason} "
                       f"({n} in a row; --max-bad-steps {limit} stops the run)")

    def step_done(self, metrics: dict, log: bool | None = None,
                  postfix: dict[str, str] | None = None) -> None:
        """Count a finished step; log its metrics (with the phase timings) when due."""
        log = self.log_due() if log is None else log
        self.state.step += 1
        self.state.batch_in_epoch += 1
        if log:
            self.log.log(self.state.step, {**metrics, **self.times,
                                           "optim/skipped_steps": self.state.skipped_steps},
                         epoch=self.state.epoch + 1)
        self.times = {}
        if postfix is not None:
            self.bar.set_postfix(**postfix)
        self.bar.update(1)

    def save(self, name: str | None = None) -> Path:
        """A resumable checkpoint, ``checkpoints/<name>`` (default ``step-<step>``), written
        only when every trainable weight and optimizer state is finite (else
        ``TrainingError``); then the oldest beyond ``save_total_limit`` are deleted."""
        bad = nonfinite_state(self.acc)
        if bad is not None:
            raise TrainingError(f"step {self.state.step}: non-finite {bad}; not saved; "
                                f"{self.last_good()}")
        path = save_checkpoint(self.acc, self.run_dir, name or f"step-{self.state.step}",
                               self.state, self.saver, run_record(self.run_cfg), self.module)
        if self.acc.is_main_process:
            rotate_checkpoints(self.run_dir, self.cfg.save_total_limit, path)
        self.saved = (self.state.step, path)
        return path

    def checkpoint(self) -> Path:
        """A checkpoint of the current step: the one written (or resumed from) at this
        step, else a new ``step-<step>``."""
        if self.saved is not None and self.saved[0] == self.state.step:
            return self.saved[1]
        return self.save()

    def close(self) -> None:
        """Close the progress bar and the logs (again: nothing)."""
        self.bar.close()
        self.log.close()

    def finish(self, final_saver: Callable[[Path], None]) -> Path:
        """Close the logs and write ``final/`` with ``final_saver``, when every trainable
        weight and optimizer state is finite (else ``TrainingError``)."""
        self.signals.restore()
        bad = nonfinite_state(self.acc)
        if bad is not None:
            raise TrainingError(f"step {self.state.step}: non-finite {bad}; final/ not written; "
                                f"{self.last_good()}")
        self.close()
        return save_final(self.acc, self.run_dir, final_saver)
