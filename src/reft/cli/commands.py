"""What each ``reft`` command does: read its arguments, call the library, say what it wrote.

One function per command, called with the parsed ``argparse.Namespace``; the work itself
lives in the library (``reft.training``, ``reft.eval``, ``reft.rollout``, ...), so the same
runs are open to Python callers. Heavy modules are imported inside each function, so
``reft --help`` stays instant.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from reft.errors import UserError


def _main_process() -> bool:
    from reft.runtime.dist import dist_state

    return dist_state().is_main_process


def demo(args: argparse.Namespace) -> int:
    """``reft demo``: the whole protocol on the embedded synthetic task."""
    from reft.demo import run_demo

    out = Path(args.out)
    t0 = time.perf_counter()
    results = run_demo(out, quick=args.quick, seed=args.seed, cot=args.cot)
    print("\n" + (out / "results.md").read_text())
    print(f"report: {out / 'report.html'}")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s "
          f"(pipeline stages: {results.get('wall_s', 0):.0f} s)")
    return 0


def pipeline(args: argparse.Namespace) -> int:
    """``reft pipeline CONFIG.yaml`` (``--out`` overrides the config's ``out:``)."""
    from reft.pipeline import load_pipeline, run_pipeline

    if getattr(args, "dry_run", False):
        return pipeline_dry_run(args)
    if any(getattr(args, k, None) not in (None, "single", "cuda") for k in _DRY_RUN_ONLY):
        raise UserError("--engine, --processes, --device and --prompt-tokens go with --dry-run")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # the evaluation and sampling stages are single-process; N copies would race
        raise UserError("reft pipeline runs as one process: start it with 'reft pipeline', not "
                        "under accelerate launch or torchrun (the stage commands can be)")
    run_pipeline(load_pipeline(args.config, getattr(args, "out", None)))
    return 0


_DRY_RUN_ONLY = ("engine", "processes", "device", "prompt_tokens")


def pipeline_dry_run(args: argparse.Namespace) -> int:
    """``reft pipeline CONFIG --dry-run``: print the plan and memory estimate; write nothing."""
    from reft.pipeline import load_pipeline
    from reft.pipeline.estimate import DEFAULT_PROMPT_TOKENS, Target
    from reft.pipeline.plan import dry_run

    engine = args.engine
    processes = args.processes if args.processes is not None else (1 if engine == "single" else 8)
    target = Target(engine, processes, args.device, args.prompt_tokens or DEFAULT_PROMPT_TOKENS)
    print(dry_run(load_pipeline(args.config, getattr(args, "out", None)), target))
    return 0


def report(args: argparse.Namespace) -> int:
    """``reft report RUN_DIR``: write the report, print the results table and where it is."""
    from reft.report import write_report

    written = write_report(args.run_dir)
    print(written["results.md"].read_text(encoding="utf-8"), end="")
    print(f"\nreport: {written['report.html']}")
    return 0


def model_init(args: argparse.Namespace) -> int:
    """``reft model init``: a tiny Llama-style model and its tokenizer."""
    from reft.models.tiny import check_out

    check_out(Path(args.out).expanduser())  # before the slow imports
    from reft.models.tiny import file_texts, init_model

    texts = file_texts(args.data) if args.data else None
    init_model(args.out, preset=args.preset, texts=texts, seed=args.seed,
               vocab_size=args.vocab_size, hidden_size=args.hidden_size, layers=args.layers,
               heads=args.heads, max_positions=args.max_positions)
    return 0


def data_synth(args: argparse.Namespace) -> int:
    """``reft data synth``: write ``--n`` problems of ``--split`` to ``--out``."""
    from reft.data.synthetic import generate, write_reft_json

    if args.n <= 0:
        raise UserError(f"--n must be a positive number of problems, got {args.n}")
    path = write_reft_json(generate(args.n, args.seed, args.split, args.cot, args.level), args.out,
                           args.cot)
    print(f"wrote {args.n} synthetic {args.split} problems ({args.cot} CoT, seed {args.seed}) to {path}")
    return 0


def data_check(args: argparse.Namespace) -> int:
    """``reft data check SOURCE``: load it, print the row count, CoT count and first example."""
    from reft.data import read_source

    fmt, label, examples = read_source(args.source, args.data_format, args.columns, args.hf_split,
                                       args.task)
    with_cot = [e for e in examples if e.cot]
    programs = sum(e.cot.lstrip().startswith(("def ", "import ", "from ")) for e in with_cot)
    kind = f" ({programs} of them Python programs)" if programs else ""
    print(f"{label}: {len(examples)} examples, format {fmt}, task {args.task}")
    print(f"with a chain of thought: {len(with_cot)}{kind}")
    first = examples[0]
    print("first example:")
    print(f"  id: {first.id}")
    print(f"  question: {first.question}")
    print(f"  answer: {first.answer}")
    if first.cot:
        print("  cot:\n" + "\n".join("    " + line for line in first.cot.splitlines()))
    return 0


def data_get(args: argparse.Namespace) -> int:
    """``reft data get NAME...``: download the paper's data sets by name (cached)."""
    from reft.data.fetch import run_get

    run_get(args.names, args.out)
    return 0


def sft(args: argparse.Namespace) -> int:
    from reft import sft as train_sft
    from reft.config import SFTConfig
    from reft.configio import config_from_args

    final = train_sft(config_from_args(SFTConfig, args))
    if _main_process():
        print(f"SFT finished: {final}")
    return 0


def ppo(args: argparse.Namespace) -> int:
    from reft import ppo as train_ppo
    from reft.config import PPOConfig
    from reft.configio import config_from_args

    final = train_ppo(config_from_args(PPOConfig, args))
    if _main_process():
        print(f"PPO finished: {final}")
    return 0


def selftrain(args: argparse.Namespace) -> int:
    from reft import selftrain as run_selftrain
    from reft.config import SelfTrainConfig
    from reft.configio import config_from_args

    cfg = config_from_args(SelfTrainConfig, args)
    final = run_selftrain(cfg)
    if _main_process():
        print(f"self-training ({cfg.mode}) finished: {final}")
    return 0


def reranker_train(args: argparse.Namespace) -> int:
    from reft import reranker as train_reranker
    from reft.config import RerankerConfig
    from reft.configio import config_from_args

    final = train_reranker(config_from_args(RerankerConfig, args))
    print(f"reranker finished: {final}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """``reft eval``: prints the summary as one JSON line."""
    import json

    from reft import evaluate as run_eval
    from reft.config import EvalConfig
    from reft.configio import config_from_args

    cfg = config_from_args(EvalConfig, args)
    summary = run_eval(cfg)
    if not _main_process():
        return 0
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}))
    print(f"wrote {Path(cfg.out) / 'eval.json'} and predictions.jsonl")
    return 0


def sample(args: argparse.Namespace) -> int:
    from reft import sample as run_sample
    from reft.config import SampleConfig
    from reft.configio import config_from_args

    out = run_sample(config_from_args(SampleConfig, args))
    if _main_process():
        print(f"wrote {out}")
    return 0


def exec_programs(args: argparse.Namespace) -> int:
    """``reft exec FILE``: one JSON line per program to stdout, a summary to stderr."""
    import collections
    import json
    import sys

    from reft.sandbox.client import Sandbox
    from reft.sandbox.programs_file import load_programs

    timeout_s = float(args.timeout_s)
    if not timeout_s > 0:
        raise UserError(f"--timeout-s must be positive, got {args.timeout_s}")
    programs = load_programs(Path(args.file))
    start = time.monotonic()
    with Sandbox(timeout_s=timeout_s) as sandbox:
        results = sandbox.run(programs)
    elapsed = time.monotonic() - start
    for i, result in enumerate(results):
        sys.stdout.write(json.dumps({"index": i, "value": result.value, "error": result.error}) + "\n")
    sys.stdout.flush()
    kinds = collections.Counter(r.kind for r in results if not r.ok)
    failed = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
    print(f"reft exec: {len(results)} programs, {len(results) - sum(kinds.values())} ok"
          f"{'; failed: ' + failed if failed else ''} ({elapsed:.1f}s)", file=sys.stderr)
    return 0
