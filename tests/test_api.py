"""The Python API: ``from reft import sft, ppo, evaluate`` with the config dataclasses."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_reft_is_light():
    code = "import sys, reft; reft.SFTConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sft_then_ppo_then_evaluate(tmp_path, tiny_model_dir, tiny_data):
    import reft
    from reft import EvalConfig, PPOConfig, SamplingConfig, SFTConfig

    warm = reft.sft(SFTConfig(model=str(tiny_model_dir), train_file=str(tiny_data.train),
                              out=str(tmp_path / "warm"), epochs=1, batch_size=8,
                              mixed_precision="no"))
    assert (warm / "config.json").is_file()
    final = reft.ppo(PPOConfig(model=str(warm), train_file=str(tiny_data.train), out=str(tmp_path / "ppo"),
                               rollout_batch_size=4, mini_batch_size=4, max_steps=1,
                               mixed_precision="no", sampling=SamplingConfig(max_new_tokens=8)))
    assert (final / "value_head.safetensors").is_file()
    summary = reft.evaluate(EvalConfig(model=str(final), test_file=str(tiny_data.test),
                                       out=str(tmp_path / "eval"), max_examples=4,
                                       sampling=SamplingConfig(max_new_tokens=8)))
    assert summary["n"] == 4
    # top-1 is the share of questions whose greedy completion was judged right
    from tests.fixtures import metrics_from_predictions

    preds = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4
    assert summary["top1"] == metrics_from_predictions(preds, k=0)["top1"]
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["top1"] == summary["top1"]
