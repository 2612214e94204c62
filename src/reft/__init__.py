"""reft: Reinforced Fine-Tuning (Luong et al., ACL 2024) for math reasoning.

The Python API: each stage takes its config dataclass (``reft.config``) and returns where it
wrote its result, as the command of the same name does (the CLI is a thin layer over these)::

    from reft import PPOConfig, SFTConfig, EvalConfig, sft, ppo, evaluate

    warm = sft(SFTConfig(model="codellama/CodeLlama-7b-hf", train_file="reft:gsm8k_nl",
                         out="runs/warmup", epochs=2))
    final = ppo(PPOConfig(model=str(warm), train_file="reft:gsm8k_nl", out="runs/reft"))
    print(evaluate(EvalConfig(model=str(final), test_file="reft:gsm8k_test", out="runs/eval")))

Heavy modules (torch, transformers) are imported when a stage runs, not by ``import reft``.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from reft._version import __version__

_CONFIGS = ("SFTConfig", "PPOConfig", "EvalConfig", "SampleConfig", "SelfTrainConfig",
            "RerankerConfig", "SamplingConfig")

__all__ = ["__version__", *_CONFIGS, "evaluate", "pipeline", "ppo", "reranker", "sample",
           "selftrain", "sft"]


def sft(cfg, examples: list | None = None) -> Path:
    """Supervised fine-tuning (warm-up or SFT baseline); returns OUT/final."""
    return import_module("reft.training.sft").train_sft(cfg, examples)


def ppo(cfg, train: list | None = None, test: list | None = None) -> Path:
    """ReFT's PPO stage from a warm-up checkpoint; returns OUT/final."""
    return import_module("reft.training.ppo").train_ppo(cfg, train, test)


def selftrain(cfg, examples: list | None = None) -> Path:
    """Offline or online self-training (``cfg.mode``); returns OUT/final."""
    return import_module("reft.training.selftrain").run_selftrain(cfg, examples)


def reranker(cfg, records: list | None = None) -> Path:
    """Train the reward model used for rerank@k; returns OUT/final."""
    return import_module("reft.training.reranker").train_reranker(cfg, records)


def evaluate(cfg) -> dict:
    """Top-1 (and vote@k, pass@k, rerank@k with ``cfg.k``); writes OUT/eval.json and
    OUT/predictions.jsonl and returns the summary."""
    return import_module("reft.eval.runner").run_eval(cfg)


def sample(cfg) -> Path:
    """k completions per question to the JSON-lines file ``cfg.out`` (resumable)."""
    return import_module("reft.rollout.samples_file").run_sample(cfg)


def pipeline(config: str | Path, out: str | None = None) -> dict:
    """The whole protocol from a pipeline YAML (``reft pipeline``); returns its results."""
    p = import_module("reft.pipeline")
    return p.run_pipeline(p.load_pipeline(config, out))


def __getattr__(name: str) -> Any:
    if name in _CONFIGS:
        return getattr(import_module("reft.config"), name)
    raise AttributeError(f"module 'reft' has no attribute {name!r}")
