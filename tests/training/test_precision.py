"""Precision: fp32 master weights under bf16 autocast, a float32 value head, LoRA merged in
fp32, ``auto`` never picking emulated bf16 (issue 17, point 1).

bf16 autocast runs on this CPU, so the same code path a GPU run takes is exercised here.
"""

from __future__ import annotations

import pytest
import torch

from reft.config import SamplingConfig
from tests.fixtures import model_weights


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state and refuses a second mixed-precision
    setting in the same process; these tests switch between them."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _sft(tmp_path, model, data, name, **kw):
    from reft.config import SFTConfig
    from reft.training.sft import train_sft

    cfg = SFTConfig(model=str(model), train_file=str(data), out=str(tmp_path / name),
                    max_examples=5, epochs=2, batch_size=1, warmup_ratio=0.0, log_every=10, **kw)
    return model_weights(train_sft(cfg))


def test_adamw_at_paper_lr_moves_bf16_autocast_weights_as_fp32(tmp_path, tiny_model_dir, tiny_data):
    """10 AdamW steps at lr 3e-7: asking for bf16 weights and bf16 compute (what ``auto``
    gives on a GPU) changes the same weights by the same amount as an fp32 run, because
    the optimizer steps fp32 masters. Stepping bf16 weights rounds ~all updates away."""
    before = model_weights(tiny_model_dir)
    fp32 = _sft(tmp_path, tiny_model_dir, tiny_data.train, "fp32", lr=3e-7, dtype="float32",
                mixed_precision="no")
    bf16 = _sft(tmp_path, tiny_model_dir, tiny_data.train, "bf16", lr=3e-7, dtype="bfloat16",
                mixed_precision="bf16")
    for name, w in before.items():
        assert bf16[name].dtype == torch.float32, name  # saved from fp32 masters
        d32, d16 = (fp32[name] - w.float()).abs(), (bf16[name] - w.float()).abs()
        changed32, changed16 = d32 > 0, d16 > 0
        # the same weights move; a handful may differ where steps of either sign cancel exactly
        differ = (changed32 != changed16).float().mean().item()
        assert differ <= 0.005, f"{name}: {differ:.2%} of weights moved in one run only"
        if changed32.any():
            m32, m16 = d32[changed32].mean().item(), d16[changed16].mean().item()
            assert abs(m16 - m32) <= 0.10 * m32, f"{name}: mean |dw| {m16:.3g} vs fp32 {m32:.3g}"
    assert any((fp32[k] != before[k]).any() for k in before)


class _RecordingAdamW(torch.optim.AdamW):
    dtypes: list[torch.dtype] = []

    def __init__(self, params, *args, **kw):
        params = list(params)
        for p in params:
            group = p["params"] if isinstance(p, dict) else [p]
            _RecordingAdamW.dtypes.extend(q.dtype for q in group)
        super().__init__(params, *args, **kw)


def _train(kind: str, tmp_path, model, data, **kw):
    from reft.config import PPOConfig, RerankerConfig, SelfTrainConfig

    out = str(tmp_path / kind)
    if kind == "sft":
        return _sft(tmp_path, model, data.train, kind, **kw)
    if kind.startswith("ppo"):
        from reft.training.ppo import train_ppo

        critic = "separate" if kind == "ppo-separate" else "shared"
        return train_ppo(PPOConfig(model=str(model), train_file=str(data.train), out=out,
                                   critic=critic, rollout_batch_size=2, mini_batch_size=2,
                                   max_steps=1, **kw, sampling=SamplingConfig(max_new_tokens=8)))
    if kind == "online":
        from reft.training.selftrain import run_selftrain

        return run_selftrain(SelfTrainConfig(model=str(model), train_file=str(data.train),
                                             out=out, mode="online", rollout_batch_size=2,
                                             max_steps=1, **kw, sampling=SamplingConfig(max_new_tokens=8)))
    from reft.training.reranker import train_reranker

    records = [{"id": "0", "question": "What is 2 + 3?", "answer": "5",
                "samples": [{"completion": "2 + 3 = 5. Therefore, the answer is: 5", "correct": True},
                            {"completion": "Therefore, the answer is: 6", "correct": False}]}]
    return train_reranker(RerankerConfig(model=str(model), out=out, epochs=1, batch_size=2, **kw),
                          records)


@pytest.mark.parametrize("kind", ["sft", "ppo", "ppo-separate", "online", "reranker"])
@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
@pytest.mark.parametrize("lora_r", [0, 4])
def test_optimizer_holds_only_fp32_weights(kind, mixed_precision, lora_r, tmp_path, tiny_model_dir,
                                           tiny_data, monkeypatch):
    """Whatever the precision setting and weights dtype asked for, every parameter the
    optimizer steps is float32 (LoRA: the adapters and a new score head; the base is frozen)."""
    monkeypatch.setattr(torch.optim, "AdamW", _RecordingAdamW)
    _RecordingAdamW.dtypes = []
    _train(kind, tmp_path, tiny_model_dir, tiny_data, dtype="bfloat16",
           mixed_precision=mixed_precision, lora_r=lora_r)
    assert _RecordingAdamW.dtypes, "no optimizer was built"
    assert set(_RecordingAdamW.dtypes) == {torch.float32}


def test_value_head_is_float32_under_autocast():
    """A value of 1 + 5e-4 (a per-token KL reward's size) survives bf16 autocast: in bf16
    the nearest values to 1 are 1 and 1.0078."""
    from reft.models.value_head import PolicyWithValueHead
    from tests.tiny import tiny_model_and_tokenizer

    lm, _ = tiny_model_and_tokenizer()
    model = PolicyWithValueHead(lm)
    with torch.no_grad():
        model.value_head.weight.zero_()
        model.value_head.bias.fill_(1.0 + 5e-4)
    ids = torch.tensor([[5, 6, 7]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, values = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert logits.dtype == torch.bfloat16  # the backbone did compute in bf16
    assert values.dtype == torch.float32
    torch.testing.assert_close(values, torch.full_like(values, 1.0 + 5e-4), rtol=0, atol=1e-7)


def test_lora_final_is_merged_in_fp32(tmp_path):
    """A LoRA delta far below bf16's resolution of the base weights survives the merge
    into ``final/`` (peft adds it in the base's dtype: a bf16 merge would drop it)."""
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    from reft.training.policy import hf_saver
    from tests.tiny import tiny_model_and_tokenizer

    lm, tok = tiny_model_and_tokenizer()
    lm = lm.to(torch.bfloat16)
    base = {k: v.float().clone() for k, v in lm.state_dict().items()}
    model = get_peft_model(lm, LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj"],
                                          task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                p.fill_(1e-3)
            elif "lora_B" in name:
                p.fill_(1e-3)  # delta = B @ A * alpha/r = 2e-6 per entry
    hf_saver(Accelerator(cpu=True), model, tok, merge=True)(tmp_path / "final")
    merged = model_weights(tmp_path / "final")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert merged[key].dtype == torch.float32
    torch.testing.assert_close(merged[key] - base[key], torch.full_like(base[key], 2e-6),
                               rtol=1e-2, atol=1e-9)


def test_auto_precision_ignores_emulated_bf16(monkeypatch):
    """``auto`` picks bf16 only where the GPU has it natively (not where torch would emulate
    it), and fp32 compute on CPU."""
    from reft.models import loading
    from reft.runtime.precision import resolve_mixed_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return including_emulation  # a pre-Ampere GPU: emulation only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert resolve_mixed_precision("auto") == "no"
    assert loading.resolve_dtype("auto", "cuda") == torch.float32
    assert calls and not any(calls)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_mixed_precision("auto") == "bf16"
    assert loading.resolve_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_mixed_precision("auto") == "no"
    assert resolve_mixed_precision("bf16") == "bf16"
