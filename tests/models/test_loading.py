"""Loading models and tokenizers: dtype choice, pad tokens, quick one-line failures."""

from __future__ import annotations

import json
import time

import pytest
import torch

from reft.errors import UserError
from reft.models.loading import (
    ensure_pad_token,
    is_reft_tiny,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from reft.models.tiny import init_model
from tests.tiny import TEXTS


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    init_model(out, texts=TEXTS, vocab_size=300, hidden_size=32, layers=2, heads=2)
    return out


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", None) == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("fp16", None) == torch.float16
    assert resolve_dtype(torch.float64) == torch.float64
    with pytest.raises(UserError, match="unknown dtype"):
        resolve_dtype("int8", "cpu")


def test_load_model_and_tokenizer_from_a_directory(model_dir):
    model = load_model(model_dir, dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    tok = load_tokenizer(model_dir)
    assert tok.pad_token == "<pad>" and tok.decode(tok("7 * 8 = 56\n")["input_ids"]) == "7 * 8 = 56\n"


@pytest.mark.parametrize("name, message", [
    ("/no/such/dir/model", "does not exist"),
    ("runs/nothing/final", "does not exist"),
    ("someone/not-a-cached-model", "pass a local model directory"),
    ("", "no model given"),
])
def test_bad_names_fail_fast_with_one_line(name, message, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub branch must not wait on the network
    start = time.monotonic()
    with pytest.raises(UserError, match=message) as info:
        load_model(name)
    assert time.monotonic() - start < 5
    assert "\n" not in str(info.value)


def test_a_directory_without_config_is_named(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(UserError, match=f"{tmp_path} is not a model directory.*peft adapter"):
        load_model(tmp_path)
    with pytest.raises(UserError, match="is a file"):
        load_model(tmp_path / "adapter_config.json")


def test_ensure_pad_token_uses_eos_then_unk(model_dir):
    tok = load_tokenizer(model_dir, ensure_pad=False)
    tok.pad_token = None
    assert ensure_pad_token(tok).pad_token == "</s>"
    tok.pad_token, tok.eos_token = None, None
    assert ensure_pad_token(tok).pad_token == "<unk>"


def test_is_reft_tiny(model_dir, tmp_path):
    assert is_reft_tiny(model_dir) and is_reft_tiny(str(model_dir))
    assert is_reft_tiny(load_model(model_dir))
    config = json.loads((model_dir / "config.json").read_text())
    del config["reft_tiny"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert not is_reft_tiny(tmp_path)
    assert not is_reft_tiny("meta-llama/Llama-2-7b-hf")
