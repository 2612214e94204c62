"""PPO runs every policy/value forward with dropout off (issue 17, point 2).

The release calls ``model.eval()`` for its update forward. With dropout on (Galactica has
0.1) the rollout's and the update's forwards draw different masks, and the first ratio
pi/pi_old is already off 1 by a few percent before any weight has moved.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from reft.config import SamplingConfig


@pytest.fixture(scope="module")
def dropout_model(tmp_path_factory, tiny_model_dir):
    """The session's tiny Llama with attention dropout 0.1."""
    out = tmp_path_factory.mktemp("dropout") / "model"
    shutil.copytree(tiny_model_dir, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg["attention_dropout"] = 0.1
    (out / "config.json").write_text(json.dumps(cfg))
    return out


@pytest.mark.parametrize("gradient_checkpointing, micro_batch_tokens, pack",
                         [(False, 8192, False), (True, 8192, False), (False, 40, False),
                          (False, 60, True), (True, 8192, True)])
def test_first_ppo_ratio_is_one_with_dropout(gradient_checkpointing, micro_batch_tokens, pack, tmp_path,
                                             dropout_model, tiny_data, monkeypatch):
    """The first ratio is 1 and nothing is clipped, also when the rollout forward and the
    update cut the rollout into different micro-batches (``micro_batch_tokens`` 40: a row or
    two each, grouped differently), and on packed rows (``--pack``)."""
    import reft.training.ppo as ppo
    from reft.config import PPOConfig

    seen, models = [], []
    real_loss, real_off = ppo.policy_loss, ppo.dropout_off

    def policy_loss(logprobs, old_logprobs, advantages, mask, *args, **kw):
        loss, stats = real_loss(logprobs, old_logprobs, advantages, mask, *args, **kw)
        ratio = torch.exp(logprobs.detach() - old_logprobs)[mask.bool()]
        checkpointing = [m.training for m in models[-1].modules()
                         if getattr(m, "gradient_checkpointing", False) is True]
        seen.append((ratio, float(stats["policy/clipfrac"]), checkpointing))
        return loss, stats

    def dropout_off(model):
        models.append(model)
        return real_off(model)

    monkeypatch.setattr(ppo, "policy_loss", policy_loss)
    monkeypatch.setattr(ppo, "dropout_off", dropout_off)
    cfg = PPOConfig(model=str(dropout_model), train_file=str(tiny_data.train), out=str(tmp_path / "run"),
                    rollout_batch_size=4, mini_batch_size=4, ppo_epochs=1, max_steps=1,
                    mixed_precision="no", lr=1e-3, micro_batch_tokens=micro_batch_tokens, pack=pack,
                    gradient_checkpointing=gradient_checkpointing, sampling=SamplingConfig(max_new_tokens=12))
    ppo.train_ppo(cfg)
    ratio, clipfrac, checkpointing = seen[0]
    assert ratio.numel() > 0
    assert (ratio - 1).abs().max().item() <= 1e-6
    assert clipfrac == 0.0
    # checkpointing stays on in the update: HF checkpoints a layer only in training mode
    if gradient_checkpointing:
        assert len(checkpointing) >= 2 and all(checkpointing)  # both decoder layers (+ the model)
    else:
        assert checkpointing == []


def test_dropout_off_leaves_no_dropout_in_checkpointed_layers():
    """With checkpointing on, the checkpointed layers stay in training mode (their own flag)
    and every dropout probability inside them is 0, so forwards are deterministic."""
    from reft.models.dropout import dropout_off
    from tests.tiny import tiny_model_and_tokenizer

    lm, _ = tiny_model_and_tokenizer()
    lm.config.attention_dropout = 0.5
    for layer in lm.model.layers:
        layer.self_attn.attention_dropout = 0.5
    lm.gradient_checkpointing_enable()
    dropout_off(lm)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    a = lm(input_ids=ids).logits
    b = lm(input_ids=ids).logits
    assert torch.equal(a, b)
    assert all(layer.training for layer in lm.model.layers)
    lm.train()  # with dropout really on, the two forwards differ: the check above can fail
    for layer in lm.model.layers:
        layer.self_attn.attention_dropout = 0.5
    assert not torch.equal(lm(input_ids=ids).logits, lm(input_ids=ids).logits)
