"""SFT's data when ``--max-length`` cuts into the prompts: an example whose prompt fills it has
no CoT token to learn from and is skipped; when that is every example the run stops in one
line naming --max-length (it was a ZeroDivisionError in the first step)."""

from __future__ import annotations

import pytest

from reft.config import SFTConfig
from reft.data.records import Example
from reft.errors import UserError
from reft.training import nll
from reft.training.sft import encode_examples
from tests.tiny import _tokenizer

SHORT = Example("s", "Tom has 3 pens.", "3", "Tom has 3 pens.")
LONG = Example("l", "Tom has 3 boxes of 12 pens. " * 12 + "How many pens?", "36", "3 * 12 = 36")


def _prompt_len(example: Example, cfg: SFTConfig) -> int:
    prompts, _ = nll.sft_pairs([example], cfg.cot, cfg.template)
    return len(_tokenizer()(prompts, add_special_tokens=True)["input_ids"][0])


def test_every_example_kept_when_the_prompts_fit(capsys):
    cfg = SFTConfig(max_length=512)
    features = encode_examples([SHORT, LONG], _tokenizer(), cfg)
    assert len(features) == 2 and all(nll.n_targets(f) > 0 for f in features)
    assert capsys.readouterr().out == ""


def test_an_example_without_room_for_its_cot_is_skipped_and_said(capsys):
    short, long = _prompt_len(SHORT, SFTConfig()), _prompt_len(LONG, SFTConfig())
    assert short + 4 < long
    cfg = SFTConfig(max_length=long)  # the long prompt fills it exactly
    features = encode_examples([SHORT, LONG, SHORT], _tokenizer(), cfg)
    assert len(features) == 2 and all(nll.n_targets(f) > 0 for f in features)
    out = capsys.readouterr().out
    assert out.startswith("sft: warning: 1 of 3 examples skipped: their prompt fills "
                          f"--max-length {long} (the longest is {long} tokens)"), out
    assert len(encode_examples([SHORT, LONG], _tokenizer(), cfg, report=False)) == 1
    assert capsys.readouterr().out == ""  # report=False: not said (processes but the main)


def test_one_cot_token_is_enough():
    long = _prompt_len(LONG, SFTConfig())
    features = encode_examples([LONG], _tokenizer(), SFTConfig(max_length=long + 1))
    assert [nll.n_targets(f) for f in features] == [1]


def test_no_room_in_any_example_is_one_line_naming_max_length():
    short, long = _prompt_len(SHORT, SFTConfig()), _prompt_len(LONG, SFTConfig())
    with pytest.raises(UserError) as e:
        encode_examples([SHORT, LONG], _tokenizer(), SFTConfig(max_length=short))
    assert str(e.value) == (f"--max-length {short}: no room for the chain of thought: every prompt "
                            f"fills it (the longest is {long} tokens); raise --max-length or "
                            "shorten --template")
    assert "\n" not in str(e.value)
