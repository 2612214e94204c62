"""``reft model init``: presets, a loadable HF directory, atomic and non-destructive writes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from reft.errors import UserError
from reft.models.tiny import PRESETS, build_config, file_texts, init_model
from tests.tiny import TEXTS


def _n_params(preset: str, vocab_size: int = 1024) -> int:
    from transformers import LlamaForCausalLM

    sizes = {**PRESETS[preset], "vocab_size": vocab_size}
    with torch.device("meta"):  # shapes only, no memory or init time
        model = LlamaForCausalLM(build_config(**sizes))
    return sum(p.numel() for p in model.parameters())


def test_preset_sizes():
    assert 1e6 < _n_params("tiny") < 3e6
    assert 5e6 < _n_params("small") < 10e6


def test_bad_shapes_are_user_errors():
    with pytest.raises(UserError, match="heads"):
        build_config(vocab_size=300, hidden_size=30, layers=2, heads=4, max_positions=64)
    with pytest.raises(UserError, match="positive"):
        build_config(vocab_size=300, hidden_size=32, layers=0, heads=2, max_positions=64)


def test_init_model_writes_a_standard_hf_directory(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = init_model(tmp_path / "m", texts=TEXTS, seed=3, vocab_size=300, hidden_size=32,
                     layers=2, heads=2, max_positions=128)
    assert "M-parameter Llama" in capsys.readouterr().out
    assert (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dir left
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tok) and model.config.reft_tiny
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 2)
    assert model.config.pad_token_id == tok.pad_token_id == 0
    assert model.config.eos_token_id == tok.eos_token_id == 2
    assert tok.model_max_length == 128
    ids = tok("Question:\n2 + 2 = 4", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(ids).logits).all()


def test_same_seed_same_weights(tmp_path):
    kw = {"texts": TEXTS, "vocab_size": 300, "hidden_size": 32, "layers": 1, "heads": 2}
    a, b = init_model(tmp_path / "a", seed=1, **kw), init_model(tmp_path / "b", seed=1, **kw)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_refuses_a_non_empty_out_dir(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        init_model(tmp_path, texts=TEXTS, vocab_size=300, hidden_size=32, layers=1, heads=2)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    init_model(empty, texts=TEXTS, vocab_size=300, hidden_size=32, layers=1, heads=2)
    assert (empty / "config.json").is_file()


def test_unknown_preset_or_override():
    with pytest.raises(UserError, match="preset"):
        init_model("unused", preset="huge", texts=TEXTS)
    with pytest.raises(TypeError, match="hiden_size"):
        init_model("unused", texts=TEXTS, hiden_size=3)


def test_tokenizer_texts_from_a_data_file(tmp_path):
    synthetic = pytest.importorskip("reft.data.synthetic")
    path = synthetic.write_reft_json(synthetic.generate(5, cot="nl"), tmp_path / "d.json")
    texts = file_texts(path)
    assert len(texts) == 5
    assert texts[0].startswith("Question:\n") and "Therefore, the answer is: " in texts[0]


@pytest.mark.slow
def test_cli_model_init(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "reft", "model", "init", "--out", str(out), "--vocab-size", "300",
           "--hidden-size", "32", "--layers", "2", "--heads", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size == 32
    assert len(AutoTokenizer.from_pretrained(out)) <= 300
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "not empty" in again.stderr
    assert again.stderr.count("\n") == 1
