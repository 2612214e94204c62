"""Tokenizers without eos or pad (Galactica's): ids from the model config, from
--eos-token-id/--pad-token-id, or a one-line error naming the flag."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from reft.errors import UserError
from reft.models.loading import load_tokenizer
from tests.fixtures import error_lines, reft_main, run_reft
from tests.tiny import _tokenizer, tiny_model_and_tokenizer


def _bare_tokenizer_dir(root: Path):
    """The tiny BPE tokenizer saved with no special-token roles: no eos, pad, bos or unk
    (the vocabulary still holds '<pad>'=0 ... '</s>'=2, as Galactica's does)."""
    from transformers import PreTrainedTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    bare = PreTrainedTokenizerFast(tokenizer_object=copy.deepcopy(_tokenizer().backend_tokenizer))
    bare.save_pretrained(root)
    tok = load_tokenizer(root, ensure_pad=False, eos_token_id=2)  # loads at all
    assert tok.eos_token_id == 2
    return root


def _config_json(root: Path, **ids) -> None:
    (root / "config.json").write_text(json.dumps({"model_type": "llama", **ids}))


def _no_roles(tmp_path: Path) -> Path:
    d = _bare_tokenizer_dir(tmp_path / "tok")
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(d)
    assert raw.eos_token_id is None and raw.pad_token_id is None
    return d


def test_ids_come_from_the_model_config(tmp_path):
    d = _no_roles(tmp_path)
    _config_json(d, eos_token_id=2, pad_token_id=1)  # Galactica's config
    tok = load_tokenizer(d)
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 1)
    assert tok.eos_token == "</s>"
    # and they stay with the tokenizer that a training run saves
    tok.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved", ensure_pad=False)
    assert (again.eos_token_id, again.pad_token_id) == (2, 1)


def test_generation_config_is_the_fallback_and_a_list_gives_its_first(tmp_path):
    d = _no_roles(tmp_path)
    _config_json(d, eos_token_id=None, pad_token_id=None)
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 5]}))
    tok = load_tokenizer(d)
    assert tok.eos_token_id == 2
    assert tok.pad_token_id == 2  # no pad anywhere: the eos, as before


def test_neither_tokenizer_nor_config_is_a_one_line_error_naming_the_flag(tmp_path):
    d = _no_roles(tmp_path)
    with pytest.raises(UserError, match="--eos-token-id") as info:
        load_tokenizer(d)
    assert "\n" not in str(info.value) and "no eos token" in str(info.value)
    _config_json(d, eos_token_id=None, pad_token_id=1)  # null: else LlamaConfig's default 2
    with pytest.raises(UserError, match="--eos-token-id"):
        load_tokenizer(d)


def test_the_flags_win(tmp_path):
    d = _no_roles(tmp_path)
    _config_json(d, eos_token_id=2, pad_token_id=1)
    tok = load_tokenizer(d, eos_token_id=5, pad_token_id=0)
    assert (tok.eos_token_id, tok.pad_token_id) == (5, 0)
    # also over a tokenizer's own ids
    tok = load_tokenizer(d, pad_token_id=3)
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 3)
    with pytest.raises(UserError, match=r"--eos-token-id 100000 is not a token id .*0 to 299"):
        load_tokenizer(d, eos_token_id=100_000)
    with pytest.raises(UserError, match="--pad-token-id -1 is not a token id"):
        load_tokenizer(d, pad_token_id=-1)


def test_a_tokenizer_with_its_own_ids_ignores_the_config(tmp_path):
    d = tmp_path / "tok"
    _tokenizer().save_pretrained(d)
    _config_json(d, eos_token_id=7, pad_token_id=8)
    tok = load_tokenizer(d)
    assert (tok.eos_token_id, tok.pad_token_id) == (2, 0)


def _bare_model_dir(tmp_path: Path) -> Path:
    """A tiny Llama whose tokenizer and config name no eos/pad/bos anywhere."""
    model, _ = tiny_model_and_tokenizer()
    model.config.eos_token_id = model.config.pad_token_id = model.config.bos_token_id = None
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = model.generation_config.bos_token_id = None
    d = _bare_tokenizer_dir(tmp_path / "model")
    model.save_pretrained(d)
    return d


def test_cli_without_an_eos_fails_with_exit_status_2_and_no_traceback(tmp_path, tiny_data):
    model = _bare_model_dir(tmp_path)
    done = run_reft("sample", "--model", model, "--data-file", tiny_data.train, "--k", "1",
                    "--out", tmp_path / "s.jsonl", cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr)
    assert "--eos-token-id" in line and "no eos token" in line


def test_cli_flags_reach_sampling(tmp_path, tiny_data, capsys):
    model = _bare_model_dir(tmp_path)
    out = tmp_path / "s.jsonl"
    rc, _, err = reft_main(capsys, "sample", "--model", model, "--data-file", tiny_data.train,
                           "--k", "1", "--max-new-tokens", "4", "--max-examples", "2",
                           "--eos-token-id", "2", "--pad-token-id", "0", "--out", out)
    assert rc == 0, err
    assert len(out.read_text().splitlines()) == 2
