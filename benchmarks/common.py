"""What every benchmark shares: the model both sides run, the data, timing and tables.

Both sides of every comparison load the same saved directory (a ``reft model init``
tiny Llama, optionally after a short SFT warm-up so that sampled completions end with
EOS at realistic lengths), read the same synthetic questions, run in the same process
with the same thread count, and are timed in alternation so machine load hits both
alike. Models are cached under ``runs/bench/`` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

# before transformers/tqdm are imported: both read these when they load
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "runs" / "bench"
THREADS = int(os.environ.get("OMP_NUM_THREADS") or 2)
"""Intra-op threads on both sides: OMP_NUM_THREADS when set (as reft's own ``setup_threads``),
else 2, the benchmark machine's cores."""


_threads = THREADS


def setup(threads: int | None = None) -> None:
    """Same threads, quiet libraries, deterministic start for every benchmark process.

    Called again after each trainer run: reft's loops set their own thread count.
    """
    global _threads
    _threads = threads or _threads
    torch.set_num_threads(_threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)


def hold_threads(module=None) -> None:
    """Make reft's training loops keep the benchmark's thread count: their ``setup_threads``
    (reft.runtime.dist) leaves the count alone when OMP_NUM_THREADS is set. ``module``: a
    training module that still has its own ``setup_threads`` (older layouts)."""
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    if module is not None and hasattr(module, "setup_threads"):
        module.setup_threads = lambda: torch.set_num_threads(_threads)


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat: a smoke run")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per side (median reported)")
    p.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads, both sides")
    return p


# ---------------------------------------------------------------------------- models


def init_dir(preset: str = "tiny") -> Path:
    """A freshly initialised ``reft model init`` model (cached)."""
    from reft.models.tiny import init_model

    out = CACHE / f"{preset}-init"
    if not (out / "config.json").exists():
        init_model(out, preset=preset)
    return out


def warm_dir(preset: str = "tiny", steps: int = 150) -> Path:
    """The init model after ``steps`` SFT steps on the synthetic task (cached).

    A warm model writes the task's format and ends with EOS after 40-90 tokens, so
    rollouts have the ragged lengths of a real ReFT run; an untrained one almost never
    samples EOS (p ~ 1/vocab per token) and fills every completion to the limit.
    """
    from reft.config import SFTConfig
    from reft.training.sft import train_sft

    out = CACHE / f"{preset}-warm"
    if (out / "config.json").exists():
        return out
    examples = questions(steps * 16, split="train")
    cfg = SFTConfig(model=str(init_dir(preset)), out=str(CACHE / f"{preset}-warm-run"), epochs=1,
                    batch_size=16, max_length=256, log_every=1000)
    final = train_sft(cfg, examples)
    os.replace(final, out)
    return out


def questions(n: int, split: str = "train", seed: int = 0):
    """``n`` synthetic N-CoT examples."""
    from reft.data import synthetic

    return synthetic.generate(n, seed=seed, split=split, cot="nl")


def prompts_of(examples) -> list[str]:
    from reft.data.prompts import build_prompt

    return [build_prompt(e.question, cot="nl") for e in examples]


def warm_sampling_args(doc: str, prompts: int, batch_size: int | None = None):
    """A sampler benchmark's start: (its arguments, the warm tiny model, its tokenizer, the
    prompts of ``--prompts`` training questions); flags ``--prompts``, ``--max-len``,
    ``--repeats`` (and ``--batch-size`` when given a default), plus ``parser``'s."""
    p = parser(doc)
    p.add_argument("--prompts", type=int, default=prompts)
    p.add_argument("--max-len", type=int, default=128)
    if batch_size is not None:
        p.add_argument("--batch-size", type=int, default=batch_size)
    a = p.parse_args()
    setup(a.threads)
    model, tok = load(warm_dir())
    return a, model, tok, prompts_of(questions(a.prompts, split="train"))


def load(path: Path):
    """(model in fp32 on CPU, tokenizer) exactly as reft loads them."""
    from reft.models.loading import ensure_pad_token, load_model, load_tokenizer

    return load_model(str(path), dtype="float32"), ensure_pad_token(load_tokenizer(str(path)))


def n_params(model, *, embeddings: bool = False) -> int:
    """Parameters that take part in matmuls (the input embedding is a lookup, not a matmul)."""
    total = sum(p.numel() for p in model.parameters())
    if not embeddings:
        total -= model.get_input_embeddings().weight.numel()
    return total


# ---------------------------------------------------------------------------- timing


def clocks() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time barely moves when other jobs
    share the cores (with one thread), wall time is what a user waits for."""
    return time.perf_counter(), time.process_time()


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(wall s, CPU s, result) of one call."""
    gc.collect()
    w0, c0 = clocks()
    out = fn()
    w1, c1 = clocks()
    return w1 - w0, c1 - c0, out


def interleave(sides: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
               ) -> dict[str, list[tuple[float, float, object]]]:
    """Run each side ``warmup`` times untimed, then ``repeats`` rounds in turn (A B A B ...).

    Alternating, rather than all A then all B, spreads a change in machine load over
    both sides; the caller reports medians.
    """
    for _ in range(warmup):
        for fn in sides.values():
            fn()
    results: dict[str, list[tuple[float, float, object]]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            results[name].append(timed(fn))
    return results


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def spread(xs: Sequence[float]) -> str:
    """min-max of repeats, to show the noise next to a median."""
    return f"{min(xs):.3g}-{max(xs):.3g}" if len(xs) > 1 else "-"


# ---------------------------------------------------------------------------- reporting


def machine() -> str:
    """One line: date, CPU count, torch/transformers/trl versions, load average now."""
    import transformers

    try:
        import trl

        trl_v = trl.__version__
    except ImportError:
        trl_v = "not installed"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.machine()}, nproc {os.cpu_count()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"transformers {transformers.__version__}, trl {trl_v}, load average {load}")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats get 3 significant digits."""
    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 1e4 else f"{x:,.0f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def report(title: str, body: str) -> None:
    print(f"\n### {title}\n\n{machine()}\n\n{body}\n", flush=True)
