"""The ``reft`` command line: parses arguments and dispatches. No logic lives here.

Heavy modules (torch, transformers) are imported only by the command that runs,
so ``reft --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from reft._version import __version__
from reft.answers import COTS
from reft.errors import TrainingError, UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _call(target: str) -> Callable[[argparse.Namespace], Any]:
    """Lazily import ``module:function`` and call it with the parsed arguments."""
    module, func = target.split(":")

    def run(args: argparse.Namespace) -> Any:
        return getattr(importlib.import_module(module), func)(args)

    return run


def _config_command(sub, name: str, cls_name: str, target: str, help_: str) -> None:
    from reft import config
    from reft.configio import add_config_args

    p = sub.add_parser(name, help=help_, description=help_)
    add_config_args(p, getattr(config, cls_name))
    p.set_defaults(func=_call(target))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="reft",
        description="Reinforced Fine-Tuning (ReFT) of language models for math reasoning.",
        epilog="Run 'reft COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"reft {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_protocols(sub)
    _add_data(sub)
    _add_model(sub)
    _add_methods(sub)
    return parser


def _add_protocols(sub) -> None:
    p = sub.add_parser("demo", help="run the whole ReFT protocol on the embedded synthetic task",
                       description="Synthetic task -> tiny model -> SFT warm-up -> continued SFT vs "
                       "ReFT -> evaluation -> results.json/results.md/report.html.")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--quick", action="store_true", help="a smaller ~3-minute version")
    p.add_argument("--cot", choices=COTS, default="python",
                   help="CoT style (default: python, where a program's operations are run by the "
                   "sandbox; nl: the model does the arithmetic)")
    p.set_defaults(func=_call("reft.cli.commands:demo"))

    p = sub.add_parser("pipeline", help="warm-up -> SFT/ReFT/baselines -> eval -> report from a YAML",
                       description="Run the paper protocol on a real model and data set; "
                       "rerunning resumes finished stages.")
    p.add_argument("config", metavar="CONFIG.yaml", help="pipeline config (see configs/)")
    p.add_argument("--out", help="output directory (default: the config's out, else runs/<name>)")
    p.add_argument("--dry-run", action="store_true",
                   help="write and run nothing: resolve the data and the model's config, print "
                   "the stages, their steps and each one's estimated peak memory per process")
    p.add_argument("--engine", choices=["single", "ddp", "zero2", "zero3"], default="single",
                   help="with --dry-run: how each stage's command is launched (default: single; "
                   "zero2/zero3: DeepSpeed, configs/accelerate/)")
    p.add_argument("--processes", type=int, default=None,
                   help="with --dry-run: processes (GPUs) for ddp/zero2/zero3 (default: 8 for them)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="with --dry-run: the device the estimate is for (default: cuda, where "
                   "dtype/mixed precision 'auto' mean bf16; cpu: fp32)")
    p.add_argument("--prompt-tokens", type=int, default=None,
                   help="with --dry-run: longest prompt in tokens, for the KV cache and PPO's "
                   "sequences (default: 256)")
    p.set_defaults(func=_call("reft.cli.commands:pipeline"))

    p = sub.add_parser("report", help="rebuild results.md, report.html and plots from a run directory "
                       "(or a folder holding one run per seed: mean ± sd)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a demo/pipeline/training run directory, or a "
                   "folder of such runs, one per seed")
    p.set_defaults(func=_call("reft.cli.commands:report"))


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="data utilities (get, synth, check)")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = dsub.add_parser("get", help="download the paper's data sets by name (cached, checked by sha256)",
                        description="Download data sets by name into the cache (HF_HOME; offline "
                        "mode uses the cache only). Names: see docs/data.md, or any bad name lists them.")
    p.add_argument("names", nargs="+", metavar="NAME", help="e.g. reft:svamp_test hf:gsm8k_train")
    p.add_argument("--out", help="also copy the files into this folder")
    p.set_defaults(func=_call("reft.cli.commands:data_get"))
    p = dsub.add_parser("synth", help="write the synthetic GSM8K-style task in ReFT JSON format")
    p.add_argument("--n", type=int, default=5000, help="number of problems (default: 5000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="which split: train and test never share a problem (default: train)")
    p.add_argument("--cot", choices=COTS, default="nl", help="CoT style (default: nl)")
    p.add_argument("--level", choices=["standard", "easy", "tiny", "paths", "products", "mental"],
                   default="standard",
                   help="difficulty: easy keeps every number below 100, tiny every step's "
                        "result below 30; paths: problems with a small-number and a "
                        "large-number solution; products: a short solution below 100 and a "
                        "long one through two-digit products; mental: tiny, with half the "
                        "annotations doing the arithmetic in the annotator's head "
                        "(default: standard)")
    p.add_argument("--out", required=True, help="output .json file")
    p.set_defaults(func=_call("reft.cli.commands:data_synth"))
    p = dsub.add_parser("check", help="load a data file and report its row count and a sample")
    p.add_argument("source", help="file, data set name (reft:..., hf:...) or Hugging Face dataset")
    p.add_argument("--data-format", default="auto", choices=["auto", "gsm8k", "reft", "hf"])
    p.add_argument("--columns", default="", help="column mapping, e.g. question=problem,answer=label")
    p.add_argument("--task", default="numeric", choices=["numeric", "mc"])
    p.add_argument("--hf-split", default="train")
    p.set_defaults(func=_call("reft.cli.commands:data_check"))


def _add_model(sub) -> None:
    model = sub.add_parser("model", help="model utilities (init)")
    msub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", parser_class=_Parser)
    p = msub.add_parser("init", help="build a tiny Llama-style model and train its tokenizer")
    p.add_argument("--out", required=True, help="output HF model directory")
    p.add_argument("--preset", choices=["tiny", "small"], default="tiny", help="size (default: tiny)")
    p.add_argument("--data", default="", help="text source for the tokenizer (default: synthetic task)")
    p.add_argument("--vocab-size", type=int, help="override the preset's vocabulary size")
    p.add_argument("--hidden-size", type=int, help="override hidden size")
    p.add_argument("--layers", type=int, help="override number of layers")
    p.add_argument("--heads", type=int, help="override number of attention heads")
    p.add_argument("--max-positions", type=int, help="override max sequence length")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_call("reft.cli.commands:model_init"))


def _add_methods(sub) -> None:
    _config_command(sub, "sft", "SFTConfig", "reft.cli.commands:sft",
                    "supervised fine-tuning (warm-up / SFT baseline), loss on CoT tokens only")
    _config_command(sub, "ppo", "PPOConfig", "reft.cli.commands:ppo",
                    "ReFT: PPO with answer rewards from a warm-up checkpoint")
    _config_command(sub, "eval", "EvalConfig", "reft.cli.commands:evaluate",
                    "evaluate top-1, vote@k, pass@k (and rerank@k with --rerank)")
    _config_command(sub, "sample", "SampleConfig", "reft.cli.commands:sample",
                    "sample k completions per question to JSON lines (resumable)")
    _config_command(sub, "selftrain", "SelfTrainConfig", "reft.cli.commands:selftrain",
                    "self-training baselines: --mode offline (sample, filter, SFT) or online")
    rr = sub.add_parser("reranker", help="reward-model reranking (train)")
    rsub = rr.add_subparsers(dest="reranker_command", metavar="SUBCOMMAND", parser_class=_Parser)
    _config_command(rsub, "train", "RerankerConfig", "reft.cli.commands:reranker_train",
                    "fine-tune a sequence classifier on sampled solutions labelled correct/incorrect")
    p = sub.add_parser("exec", help="run model-written programs from a JSON file in the sandbox")
    p.add_argument("file", help="JSON array of program strings (or objects with a 'program' key)")
    p.add_argument("--timeout-s", type=float, default=3.0, help="per-program time limit (default: 3)")
    p.set_defaults(func=_call("reft.cli.commands:exec_programs"))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        if args.command is None:
            parser.print_help()
            return 0
        # a command group without its subcommand: a usage error
        group = next(a for a in parser._subparsers._group_actions[0].choices.items()
                     if a[0] == args.command)[1]
        names = ", ".join(group._subparsers._group_actions[0].choices)
        print(f"reft {args.command}: error: a subcommand is required ({names}); "
              f"see 'reft {args.command} --help'", file=sys.stderr)
        return 2
    try:
        result = args.func(args)
    except UserError as e:  # bad input: 2; a refused write (runtime.io.CannotWrite): 1
        print(f"reft {args.command}: error: {e}", file=sys.stderr)
        return getattr(e, "exit_status", 2)
    except TrainingError as e:
        print(f"reft {args.command}: training stopped: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # a training loop's runtime.signals.Interrupted says more
        print(f"reft {args.command}: interrupted{f': {e}' if str(e) else ''}", file=sys.stderr)
        return getattr(e, "exit_status", 130)
    except BrokenPipeError:  # e.g. `reft data check FILE | head`
        sys.stderr.close()
        return 0
    except OSError as e:  # the environment failed (disk full, read-only, ...): one line, 1
        where = f"{e.filename}: " if e.filename else ""
        print(f"reft {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    return int(result or 0)
