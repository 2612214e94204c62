"""The value head on a shared backbone, and the separate critic."""

from __future__ import annotations

import pytest
import torch

from reft.errors import UserError
from reft.models.loading import is_reft_tiny
from reft.models.value_head import VALUE_HEAD_FILE, PolicyWithValueHead, SeparateCritic
from tests.tiny import tiny_model_and_tokenizer

PROMPTS = ["Question:\n3 * 12 = ?\nAnswer reasoning:\n", "1 + 1 = 2", "def solution():\n    return 7"]


def _batch(tok, side="right"):
    return tok(PROMPTS, padding=True, padding_side=side, return_tensors="pt")


def test_forward_shapes_and_logits_match_the_lm():
    lm, tok = tiny_model_and_tokenizer()
    policy = PolicyWithValueHead(lm)
    batch = _batch(tok)
    logits, values = policy(batch["input_ids"], batch["attention_mask"])
    B, T = batch["input_ids"].shape
    assert logits.shape == (B, T, len(tok)) and values.shape == (B, T)
    assert values.dtype == torch.float32 and values.abs().max() < 0.1  # small init
    expected = lm(**batch).logits
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(logits[mask], expected[mask])


def test_left_padding_gives_the_same_outputs_as_right_padding():
    lm, tok = tiny_model_and_tokenizer()
    policy = PolicyWithValueHead(lm)
    right, left = _batch(tok, "right"), _batch(tok, "left")
    r_logits, r_values = policy(right["input_ids"], right["attention_mask"])
    l_logits, l_values = policy(left["input_ids"], left["attention_mask"])
    assert torch.isfinite(l_values).all() and torch.isfinite(l_logits).all()
    r_mask, l_mask = right["attention_mask"].bool(), left["attention_mask"].bool()
    torch.testing.assert_close(l_values[l_mask], r_values[r_mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(l_logits[l_mask], r_logits[r_mask], atol=1e-4, rtol=1e-4)


def test_value_gradients_reach_the_backbone_and_the_head():
    lm, tok = tiny_model_and_tokenizer()
    policy = PolicyWithValueHead(lm)
    batch = _batch(tok)
    _, values = policy(batch["input_ids"], batch["attention_mask"])
    values.sum().backward()
    assert policy.value_head.weight.grad.abs().sum() > 0
    assert lm.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_bf16_backbone_keeps_a_float32_head():
    lm, tok = tiny_model_and_tokenizer()
    policy = PolicyWithValueHead(lm.to(torch.bfloat16))
    batch = _batch(tok)
    logits, values = policy(batch["input_ids"], batch["attention_mask"])
    assert policy.value_head.weight.dtype == torch.float32
    assert logits.dtype == torch.bfloat16 and values.dtype == torch.float32


def test_save_and_load_round_trip(tmp_path):
    from transformers import AutoModelForCausalLM

    lm, tok = tiny_model_and_tokenizer()
    lm.config.reft_tiny = True
    policy = PolicyWithValueHead(lm)
    with torch.no_grad():
        policy.value_head.weight.normal_()
        policy.value_head.bias.fill_(0.5)
    policy.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert (tmp_path / VALUE_HEAD_FILE).is_file()
    AutoModelForCausalLM.from_pretrained(tmp_path)  # still a plain HF checkpoint

    loaded = PolicyWithValueHead.from_pretrained(tmp_path)
    assert is_reft_tiny(loaded)
    batch = _batch(tok)
    for a, b in zip(policy(**batch), loaded(**batch), strict=True):
        torch.testing.assert_close(a, b)

    (tmp_path / VALUE_HEAD_FILE).unlink()
    fresh = PolicyWithValueHead.from_pretrained(tmp_path)
    assert fresh.value_head.bias.item() == 0.0


def test_a_value_head_of_the_wrong_width_is_a_user_error(tmp_path):
    from safetensors.torch import save_file

    lm, _ = tiny_model_and_tokenizer()
    lm.save_pretrained(tmp_path)
    save_file({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, str(tmp_path / VALUE_HEAD_FILE))
    with pytest.raises(UserError, match="hidden size 32"):
        PolicyWithValueHead.from_pretrained(tmp_path)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # inside peft
def test_works_on_a_peft_model():
    peft = pytest.importorskip("peft")
    lm, tok = tiny_model_and_tokenizer()
    lora = peft.get_peft_model(lm, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    policy = PolicyWithValueHead(lora)
    batch = _batch(tok)
    logits, values = policy(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"].bool()
    torch.testing.assert_close(logits[mask], lora(**batch).logits[mask])
    values.sum().backward()
    lora_grads = [p.grad for n, p in lora.named_parameters() if "lora_" in n]
    assert lora_grads and all(g is not None for g in lora_grads)


def test_separate_critic():
    lm, tok = tiny_model_and_tokenizer(seed=1)
    critic = SeparateCritic(lm)
    batch = _batch(tok)
    values = critic(batch["input_ids"], batch["attention_mask"])
    assert values.shape == batch["input_ids"].shape and values.dtype == torch.float32
    assert not lm.lm_head.weight.requires_grad  # never run, so never trained
    values.sum().backward()
    assert critic.value_head.weight.grad is not None


def test_separate_critic_save_and_load(tmp_path):
    lm, tok = tiny_model_and_tokenizer(seed=1)
    critic = SeparateCritic(lm)
    critic.save_pretrained(tmp_path)
    loaded = SeparateCritic.from_pretrained(tmp_path)
    batch = _batch(tok)
    torch.testing.assert_close(critic(**batch), loaded(**batch))
