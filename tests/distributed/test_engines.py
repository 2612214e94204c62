"""The shipped Accelerate configs and reft's DeepSpeed/FSDP glue, checked without a GPU.

Each YAML goes through ``accelerate launch``'s own parsing and validation and then builds
the plugin the launched processes would build from the environment the launcher sets.
DeepSpeed itself is not installed here: the ZeRO-3 reference wrapper is checked against a
stand-in ``deepspeed`` module, and shown not to be used on CPU.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest
import torch

from reft.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def _launch_args(name: str):
    """What ``accelerate launch --config_file NAME.yaml -m reft sft`` resolves to."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / f"{name}.yaml"),
                                               "-m", "reft", "sft"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    return args, defaults, mp_from_config


def _plugin(name: str):
    """The DeepSpeed/FSDP plugin a launched process builds from the launcher's environment."""
    from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin, patch_environment
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, mp_from_config = _launch_args(name)
    if args.use_deepspeed:
        # as launch_command does before deepspeed_launcher
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if mp_from_config else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
        make = DeepSpeedPlugin
    else:
        env = prepare_multi_gpu_env(args)
        make = FullyShardedDataParallelPlugin
    with patch_environment(**{k: v for k, v in env.items() if os.environ.get(k) != v}):
        return make()


@pytest.mark.parametrize("name", ["deepspeed_zero2", "deepspeed_zero3", "fsdp", "multi_cpu_2proc"])
def test_config_parses_with_accelerates_own_classes(name):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import ComputeEnvironment

    cfg = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert isinstance(cfg, ClusterConfig)
    assert cfg.compute_environment == ComputeEnvironment.LOCAL_MACHINE
    assert cfg.num_machines == 1 and cfg.machine_rank == 0
    assert cfg.num_processes == (2 if name == "multi_cpu_2proc" else 8)  # the paper's 8 GPUs
    assert cfg.mixed_precision == ("no" if name == "multi_cpu_2proc" else "bf16")


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_configs_launch_the_zero_stage(name, stage):
    args, _, _ = _launch_args(name)
    assert args.use_deepspeed and not (args.use_fsdp or args.multi_gpu)
    plugin = _plugin(name)
    ds = plugin.deepspeed_config
    assert plugin.zero_stage == ds["zero_optimization"]["stage"] == stage
    assert ds["gradient_clipping"] == 1.0 and ds["gradient_accumulation_steps"] == 1
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "none"
    # reft fills this one in before prepare (no DataLoader is prepared)
    assert plugin.is_auto("train_micro_batch_size_per_gpu")
    if stage == 3:  # final/ and checkpoints' model/ need the gathered 16-bit weights
        assert plugin.zero3_init_flag
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]


def test_fsdp_config_launches_fsdp2_per_decoder_layer():
    from torch.distributed.fsdp import StateDictType

    args, _, _ = _launch_args("fsdp")
    assert args.use_fsdp and not (args.use_deepspeed or args.multi_gpu)
    plugin = _plugin("fsdp")
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.state_dict_type == StateDictType.SHARDED_STATE_DICT
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"


def test_multi_cpu_config_uses_the_torchrun_launcher():
    args, _, _ = _launch_args("multi_cpu_2proc")
    assert args.multi_gpu and not args.cpu and args.use_cpu and args.num_processes == 2


# ------------------------------------------------------------------ reft's engine glue


class _FakeState:
    def __init__(self, plugin=None):
        self.deepspeed_plugin = plugin


class _FakeAccelerator:
    """What prepare_engine/_zero3_inference read from an Accelerator."""

    def __init__(self, plugin=None):
        from accelerate.utils import DistributedType

        self.state = _FakeState(plugin)
        self.distributed_type = DistributedType.DEEPSPEED if plugin else DistributedType.NO


def _cfg(lora_r: int = 0):
    return types.SimpleNamespace(lora_r=lora_r)


def test_prepare_engine_fills_deepspeeds_micro_batch():
    from reft.runtime.dist import prepare_engine, shards_params

    acc = _FakeAccelerator(_plugin("deepspeed_zero2"))
    prepare_engine(acc, _cfg(), micro_batch=4)
    assert acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 4
    assert not shards_params(acc)
    prepare_engine(acc, _cfg(lora_r=8), micro_batch=4)  # LoRA with ZeRO-2 is fine


def test_prepare_engine_refuses_what_deepspeed_would_get_wrong():
    from reft.runtime.dist import prepare_engine, shards_params

    with pytest.raises(UserError, match="--grad-accum 1"):
        prepare_engine(_FakeAccelerator(_plugin("deepspeed_zero2")), _cfg(), 4, backward_passes=2)
    zero3 = _FakeAccelerator(_plugin("deepspeed_zero3"))
    assert shards_params(zero3)
    with pytest.raises(UserError, match="LoRA"):
        prepare_engine(zero3, _cfg(lora_r=8), 4)


def test_zero3_reference_is_an_inference_engine(monkeypatch):
    """Under ZeRO-3 the frozen reference goes through deepspeed.initialize with the run's
    config minus optimizer/scheduler (TRL's prepare_deepspeed)."""
    from reft.training.reference import zero3_inference as _zero3_inference

    plugin = _plugin("deepspeed_zero3")
    plugin.deepspeed_config["optimizer"] = {"type": "AdamW"}
    seen = {}

    def initialize(model, config):
        seen.update(model=model, config=config)
        return "engine", None, None, None

    monkeypatch.setitem(sys.modules, "deepspeed", types.SimpleNamespace(initialize=initialize))
    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=32))
    assert _zero3_inference(model, _FakeAccelerator(plugin)) == "engine"
    assert seen["model"] is model
    ds = seen["config"]
    assert "optimizer" not in ds and "scheduler" not in ds
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_param_persistence_threshold"] == 320
    assert "optimizer" in plugin.deepspeed_config  # the policy's config is left alone


def test_zero3_reference_is_not_used_without_deepspeed(tiny_model_dir, monkeypatch):
    from reft.config import PPOConfig
    from reft.runtime.dist import shards_params
    from reft.runtime.precision import make_accelerator
    from reft.training.reference import reference_model as _reference
    from reft.training.reference import zero3_inference as _zero3_inference

    monkeypatch.setitem(sys.modules, "deepspeed", None)  # any import of it would fail
    cfg = PPOConfig(model=str(tiny_model_dir), mixed_precision="no")
    acc = make_accelerator(cfg)
    assert not shards_params(acc)
    model = torch.nn.Linear(2, 2)
    assert _zero3_inference(model, acc) is model
    ref = _reference(cfg, None, acc)
    assert not ref.training and not any(p.requires_grad for p in ref.parameters())


# --------------------------------------- training commands under a DeepSpeed plugin (issue 17)


class _Prepared(Exception):
    """Raised by ``_DeepSpeedRun.prepare``: the run got as far as building the engine."""


class _DeepSpeedRun:
    """A real CPU Accelerator seen through a DeepSpeed plugin: what reft reads of the engine
    comes from the plugin, the rest (device, rank, barriers) from the real one. ``prepare``
    stops the run with the micro-batch DeepSpeed would be built with: without a DataLoader
    Accelerate refuses one left at "auto", and DeepSpeed is not installed to go further."""

    def __init__(self, real, plugin):
        from accelerate.utils import DistributedType

        self._real = real
        self.state = _FakeState(plugin)
        self.distributed_type = DistributedType.DEEPSPEED

    def __getattr__(self, name):
        return getattr(self._real, name)

    def prepare(self, *args):
        raise _Prepared(self.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"])


def _under_deepspeed(monkeypatch, module, name: str) -> None:
    """Make ``module`` (a training module) build its accelerator under the plugin ``name``."""
    from reft.runtime.precision import make_accelerator

    plugin = _plugin(name)
    monkeypatch.setattr(module, "make_accelerator", lambda cfg: _DeepSpeedRun(make_accelerator(cfg), plugin))


def _samples_file(path: Path) -> Path:
    import json

    text = "Tom has 3 * 12 = 36 pens.\nTherefore, the answer is: 36"
    rows = [{"id": f"q{i}", "question": f"Tom has {i} boxes of 12 pens. How many pens?",
             "samples": [{"completion": text, "correct": i == 3},
                         {"completion": text.replace("36", "37"), "correct": False}]}
            for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_reranker_training_fills_deepspeeds_micro_batch(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """``reft reranker train`` under DeepSpeed reaches the engine with its micro-batch set
    (left "auto", Accelerate's prepare raises), and refuses LoRA under ZeRO-3 in one line."""
    import reft.training.reranker as reranker
    from tests.fixtures import error_lines, reft_main

    args = ["reranker", "train", "--model", tiny_model_dir, "--samples", _samples_file(tmp_path / "s.jsonl"),
            "--batch-size", 3, "--mixed-precision", "no"]
    _under_deepspeed(monkeypatch, reranker, "deepspeed_zero2")
    with pytest.raises(_Prepared) as reached:
        reft_main(capsys, *args, "--out", tmp_path / "full")
    assert reached.value.args == (3,)

    _under_deepspeed(monkeypatch, reranker, "deepspeed_zero3")
    rc, _, err = reft_main(capsys, *args, "--lora-r", 4, "--out", tmp_path / "lora")
    assert rc == 2 and len(error_lines(err)) == 1, err
    assert "LoRA with sharded parameters" in err
    assert not (tmp_path / "lora").exists()  # refused before the run directory is made


@pytest.mark.parametrize("stage, critic, estimator, refused", [
    (3, "separate", "gae", True),
    (2, "separate", "gae", False),   # ZeRO-2: every process holds the whole policy to copy
    (3, "shared", "gae", False),
    (3, "separate", "grpo", False),  # value-free: no critic is built
])
def test_ppo_refuses_a_separate_critic_under_zero3(stage, critic, estimator, refused, tiny_model_dir,
                                                   tiny_data, tmp_path, monkeypatch, capsys):
    """The separate critic is a deepcopy of the policy, which under ZeRO-3 holds only this
    process's shards: refused in one line before anything loads."""
    import reft.training.ppo_setup as ppo_setup
    from tests.fixtures import error_lines, reft_main

    _under_deepspeed(monkeypatch, ppo_setup, f"deepspeed_zero{stage}")
    args = ["ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train, "--critic", critic,
            "--estimator", estimator, "--samples-per-question", 2, "--mini-batch-size", 4,
            "--mixed-precision", "no", "--out", tmp_path / "ppo"]
    if not refused:
        with pytest.raises(_Prepared) as reached:
            reft_main(capsys, *args)
        assert reached.value.args == (4,)
        return
    rc, _, err = reft_main(capsys, *args)
    assert rc == 2 and len(error_lines(err)) == 1, err
    assert "--critic separate" in err and "ZeRO-3" in err
    assert not (tmp_path / "ppo").exists()
