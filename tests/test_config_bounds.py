"""Range, choice and template checks of the config layer (``reft.config.validate``)."""

from __future__ import annotations

import argparse
import dataclasses
import re

import pytest

import reft.config.checks as checks
from reft.config import (
    ConfigError,
    DataArgs,
    EvalConfig,
    PPOConfig,
    RerankerConfig,
    SampleConfig,
    SamplingConfig,
    SelfTrainConfig,
    SFTConfig,
    TrainArgs,
)
from reft.configio import add_config_args, config_from_args, groups, leaves, make_config
from reft.errors import UserError

CLASSES = [DataArgs, TrainArgs, SFTConfig, SamplingConfig, EvalConfig, PPOConfig, SampleConfig,
           SelfTrainConfig, RerankerConfig]
MESSAGE = re.compile(r"^--[a-z0-9-]+: must (be|contain) .+; got .+$")


def _numeric_fields(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if checks._field_kind(f.type)]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_numeric_field_has_bounds_and_the_defaults_pass(cls):
    bounds = {k for k in checks.merged_table(cls, "BOUNDS") if "." not in k}  # own fields
    assert sorted(bounds) == sorted(_numeric_fields(cls))
    assert set(checks.merged_table(cls, "CHOICES")) <= {f.name for f in dataclasses.fields(cls)}
    cls()  # the defaults are valid


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_checked_exactly_once_per_construction(cls, monkeypatch):
    calls = []
    real = checks.validate
    monkeypatch.setattr(checks, "validate", lambda cfg: calls.append(type(cfg)) or real(cfg))
    cfg = cls()
    mine = lambda: [c for c in calls if c is cls]  # noqa: E731 (a nested sampling group checks itself)
    assert len(mine()) == 1
    if cls is SamplingConfig:
        dataclasses.replace(cfg, gen_batch_size=3)
    else:
        dataclasses.replace(cfg, seed=3)
    assert len(mine()) == 2
    make_config(cls, {"max_new_tokens": 4} if cls is SamplingConfig else {"seed": 4})
    assert len(mine()) == 3


BAD = [
    (SFTConfig, {"batch_size": 0}, "--batch-size: must be an integer >= 1; got 0"),
    (SFTConfig, {"lr": -1.0}, "--lr: must be > 0; got -1.0"),
    (SFTConfig, {"lr": 0.0}, "--lr: must be > 0; got 0.0"),
    (SFTConfig, {"lr": float("inf")}, "--lr: must be > 0; got inf"),
    (SFTConfig, {"epochs": -1}, "--epochs: must be an integer >= 1; got -1"),
    (SFTConfig, {"max_length": 8},
     "--max-length: must be an integer >= 16 (room for a prompt and its answer); got 8"),
    (SFTConfig, {"template": "no placeholder"},
     "--template: must contain {question}; got 'no placeholder'"),
    (SFTConfig, {"cot": "latex"}, "--cot: must be one of nl, python; got 'latex'"),
    (SFTConfig, {"max_grad_norm": 0.0}, "--max-grad-norm: must be > 0; got 0.0"),
    (SFTConfig, {"max_grad_norm": float("nan")}, "--max-grad-norm: must be > 0; got nan"),
    (SFTConfig, {"pad_token_id": -1}, "--pad-token-id: must be an integer >= 0; got -1"),
    (EvalConfig, {"k": -3}, "--k: must be an integer >= 0 (0 = greedy top-1 only); got -3"),
    (EvalConfig, {"timeout_s": 0.0}, "--timeout-s: must be > 0; got 0.0"),
    (EvalConfig, {"max_examples": -1}, "--max-examples: must be an integer >= 0; got -1"),
    (SampleConfig, {"k": 0}, "--k: must be an integer >= 1; got 0"),
    (PPOConfig, {"mini_batch_size": 0}, "--mini-batch-size: must be an integer >= 1; got 0"),
    (PPOConfig, {"temperature": 0.0},
     "--temperature: must be > 0 (log-probabilities are taken at it); got 0.0"),
    (PPOConfig, {"lam": 1.5}, "--lam: must be between 0 and 1; got 1.5"),
    (PPOConfig, {"partial_reward": -0.1}, "--partial-reward: must be between 0 and 1; got -0.1"),
    (PPOConfig, {"loss_agg": "mean"}, "--loss-agg: must be one of"),
    (SelfTrainConfig, {"gen_batch_size": 0}, "--gen-batch-size: must be an integer >= 1; got 0"),
    (SelfTrainConfig, {"mode": "both"}, "--mode: must be one of offline, online; got 'both'"),
    (RerankerConfig, {"warmup_ratio": 2.0}, "--warmup-ratio: must be between 0 and 1; got 2.0"),
    (RerankerConfig, {"lora_dropout": 1.0}, "--lora-dropout: must be >= 0 and < 1; got 1.0"),
]


def _direct(cls, values: dict):
    """``cls(...)`` from flat values, a nested group's fields given to the group's class."""
    nested, owner = groups(cls), leaves(cls)
    top = {k: v for k, v in values.items() if owner[k] is cls}
    for g, gcls in nested.items():
        mine = {k: v for k, v in values.items() if owner[k] is gcls}
        if mine:
            top[g] = gcls(**mine)
    return cls(**top)


def _get(cfg, name: str):
    owner = leaves(type(cfg))[name]
    group = next((g for g, c in groups(type(cfg)).items() if c is owner), None)
    return getattr(getattr(cfg, group) if group else cfg, name)


@pytest.mark.parametrize("cls, values, message", BAD,
                         ids=[f"{c.__name__}-{next(iter(v))}" for c, v, _ in BAD])
def test_bad_value_is_one_line_naming_the_flag(cls, values, message):
    with pytest.raises(ConfigError) as e:
        _direct(cls, values)
    assert isinstance(e.value, UserError)
    assert str(e.value).startswith(message) and MESSAGE.match(str(e.value)), str(e.value)
    assert e.value.field == next(iter(values))
    with pytest.raises(ConfigError, match=re.escape(message)):  # the same through make_config
        make_config(cls, values)


@pytest.mark.parametrize("value", [2.5, True, "4", None])
def test_python_callers_get_no_coercion(value):
    """make_config coerces YAML and flag text; a Python caller's value is taken as it is."""
    with pytest.raises(ConfigError, match=r"^--batch-size: must be an integer >= 1; got "):
        SFTConfig(batch_size=value)


GOOD = [
    (SFTConfig, {"max_length": 16, "batch_size": 1, "epochs": 1, "lr": 1e-9, "warmup_ratio": 0.0}),
    (SFTConfig, {"warmup_ratio": 1.0, "weight_decay": 0.0, "max_grad_norm": float("inf"), "seed": 0}),
    (SFTConfig, {"lora_r": 0, "lora_dropout": 0.0, "max_examples": 0, "grad_accum": 1}),
    (SFTConfig, {"eos_token_id": 0, "pad_token_id": 0, "lr": None}),
    (EvalConfig, {"k": 0, "temperature": 0.0, "timeout_s": 0.001, "max_new_tokens": 1}),
    (SampleConfig, {"k": 1, "temperature": 0.0, "gen_batch_size": 1}),
    (PPOConfig, {"gamma": 1.0, "lam": 0.0, "kl_coef": 0.0, "vf_coef": 0.0, "partial_reward": 0.0}),
    (PPOConfig, {"max_steps": 0, "eval_every": 0, "eval_examples": 0, "kl_warn": float("inf"),
                 "value_lr": None, "kl_coef": None, "temperature": 1e-3, "samples_per_question": 1}),
    (SelfTrainConfig, {"temperature": 0.0, "max_steps": 0, "k": 1, "max_per_question": 1}),
    (RerankerConfig, {"max_length": 16, "batch_size": 1}),
]


@pytest.mark.parametrize("cls, values", GOOD, ids=[c.__name__ for c, _ in GOOD])
def test_edge_values_are_accepted(cls, values):
    cfg = _direct(cls, values)
    assert all(_get(cfg, k) == v for k, v in values.items())


def test_yaml_value_names_its_file_a_flag_does_not(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 0\nlr: 0.001\n")
    p = argparse.ArgumentParser()
    add_config_args(p, SFTConfig)
    with pytest.raises(ConfigError) as e:
        config_from_args(SFTConfig, p.parse_args(["--config", str(bad)]))
    assert str(e.value) == f"{bad}: --batch-size: must be an integer >= 1; got 0"
    with pytest.raises(ConfigError) as e:
        config_from_args(SFTConfig, p.parse_args(["--config", str(bad), "--batch-size", "4",
                                                  "--epochs", "0"]))
    assert str(e.value) == "--epochs: must be an integer >= 1; got 0"
    cfg = config_from_args(SFTConfig, p.parse_args(["--config", str(bad), "--batch-size", "4"]))
    assert (cfg.batch_size, cfg.lr) == (4, 0.001)
    bad.write_text("batch-size: 0\n")  # either spelling of the key; the flag still wins
    assert config_from_args(SFTConfig, p.parse_args(["--config", str(bad), "--batch-size", "2"])
                            ).batch_size == 2


def test_pipeline_sections_are_checked_and_named():
    from reft.pipeline.spec import parse_pipeline

    base = {"model": "m", "data": {"train_file": "a", "test_file": "b"}}
    with pytest.raises(UserError) as e:
        parse_pipeline({**base, "warmup": {"batch_size": 0}}, "pipe.yaml")
    assert str(e.value) == "pipe.yaml: warmup: --batch-size: must be an integer >= 1; got 0"
    with pytest.raises(UserError) as e:  # a section class without its own check (RunArgs)
        parse_pipeline({**base, "cot": "latex"}, "pipe.yaml")
    assert str(e.value) == "pipe.yaml: --cot: must be one of nl, python; got 'latex'"
    with pytest.raises(UserError, match=r"^pipe.yaml: reft: --temperature: must be > 0"):
        parse_pipeline({**base, "reft": {"temperature": 0}}, "pipe.yaml")
