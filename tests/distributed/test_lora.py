"""LoRA through peft (tier 2 and 3): the reference policy is the trained network with its
adapters off (no second copy), the value head trains, and final/ is a plain merged HF
directory that loads without peft."""

from __future__ import annotations

import pytest
import torch

from tests.fixtures import model_weights, reft_main, weights_changed


def _policy(tiny_model_dir, **kw):
    from reft.config import PPOConfig
    from reft.runtime.precision import make_accelerator
    from reft.training.policy import load_policy

    cfg = PPOConfig(model=str(tiny_model_dir), lora_r=4, mixed_precision="no", **kw)
    acc = make_accelerator(cfg)
    lm, tok = load_policy(cfg, acc)
    return cfg, acc, lm, tok


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def test_reference_is_the_policy_with_adapters_off(tiny_model_dir):
    from reft.models.actor_critic import ActorCritic
    from reft.models.loading import load_model
    from reft.training.reference import AdaptersOff as _AdaptersOff
    from reft.training.reference import reference_model as _reference

    cfg, acc, lm, _ = _policy(tiny_model_dir)
    ref = _reference(cfg, lm, acc)
    assert isinstance(ref, _AdaptersOff) and ref.model is lm  # no weights of its own
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():  # as after some training: the adapters change the policy
        for name, p in lm.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    base = load_model(tiny_model_dir, dtype="float32")
    assert not torch.allclose(_logits(lm, ids), _logits(base, ids), atol=1e-4)
    torch.testing.assert_close(_logits(ref, ids), _logits(base, ids))  # the warm-up model
    assert not torch.allclose(_logits(lm, ids), _logits(base, ids), atol=1e-4)  # adapters back on

    ac = ActorCritic(lm, "shared", value_free=False)
    trainable = {n for n, p in ac.named_parameters() if p.requires_grad}
    assert {"body.value_head.weight", "body.value_head.bias"} <= trainable
    assert trainable - {"body.value_head.weight", "body.value_head.bias"}
    assert all("lora_" in n for n in trainable if "value_head" not in n)  # base weights frozen


def _assert_plain_merged(final, base_dir):
    from transformers import AutoModelForCausalLM

    assert not (final / "adapter_config.json").exists()
    merged, base = model_weights(final), model_weights(base_dir)
    assert merged.keys() == base.keys()  # no lora_A/lora_B, no base_model.model. prefix
    assert weights_changed(base, merged)
    model = AutoModelForCausalLM.from_pretrained(final)
    assert type(model).__module__.startswith("transformers.")
    assert not hasattr(model, "peft_config")


@pytest.mark.slow
def test_lora_sft_then_lora_ppo_write_plain_merged_models(tmp_path, tiny_model_dir, tiny_data, capsys):
    from safetensors.torch import load_file

    from reft.models.value_head import PolicyWithValueHead

    sft = tmp_path / "sft"
    rc, _, err = reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--epochs", 1, "--batch-size", 4, "--lr", 1e-2, "--lora-r", 4,
                           "--mixed-precision", "no", "--out", sft)
    assert rc == 0, err
    assert (sft / "checkpoints" / "epoch-1" / "model" / "adapter_config.json").is_file()
    _assert_plain_merged(sft / "final", tiny_model_dir)

    ppo = tmp_path / "ppo"
    rc, _, err = reft_main(capsys, "ppo", "--model", sft / "final", "--train-file", tiny_data.train,
                           "--max-steps", 2, "--rollout-batch-size", 2, "--mini-batch-size", 2,
                           "--max-new-tokens", 12, "--lr", 1e-2, "--lora-r", 4,
                           "--mixed-precision", "no", "--out", ppo)
    assert rc == 0, err
    assert (ppo / "checkpoints" / "step-2" / "model" / "adapter_config.json").is_file()
    _assert_plain_merged(ppo / "final", sft / "final")
    head = load_file(str(ppo / "final" / "value_head.safetensors"))
    fresh = PolicyWithValueHead.from_pretrained(sft / "final").value_head.state_dict()
    assert weights_changed(fresh, head)  # the value head was trained
