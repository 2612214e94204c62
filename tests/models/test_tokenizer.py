"""The tiny model's byte-level BPE tokenizer: exact round trips, one token per digit."""

from __future__ import annotations

import pytest

from reft.errors import UserError
from reft.models.tiny import SPECIAL_TOKENS, train_tokenizer
from tests.tiny import TEXTS, _tokenizer

ROUND_TRIP = [
    "Question:\nTom has 3 boxes.\nAnswer reasoning:\n",
    "3 * 12 = 36\n36 - 5 = 31\nTherefore, the answer is: 31",
    'def solution():\n    """Ann has 4 apples."""\n    apples = 4\n    return result\n',
    "  two leading spaces,\ttabs,\n\n\nblank lines and trailing spaces   ",
    "unicode: café, 3½ km, €20, 数学",
    "<s> and </s> written by the model",
    "",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_decode_encode_round_trips_exactly(text):
    tok = _tokenizer()
    assert tok.decode(tok(text)["input_ids"]) == text


def test_digits_are_one_token_each():
    tok = _tokenizer()
    assert tok.convert_ids_to_tokens(tok("1234")["input_ids"]) == ["1", "2", "3", "4"]
    # digits never merge with neighbours, even after training on many numbers
    tokens = tok.convert_ids_to_tokens(tok("x = 2024 + 17")["input_ids"])
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert digit_tokens == ["2", "0", "2", "4", "1", "7"]


def test_special_tokens_and_no_automatic_bos_eos():
    tok = _tokenizer()
    assert [tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token] == SPECIAL_TOKENS
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    ids = tok("Question:")["input_ids"]
    assert tok.bos_token_id not in ids and tok.eos_token_id not in ids
    assert tok("</s>")["input_ids"] == [tok.eos_token_id]
    assert tok.decode(tok("31</s>")["input_ids"], skip_special_tokens=True) == "31"


def test_vocab_size_is_an_upper_bound_and_has_a_floor():
    tok = train_tokenizer(TEXTS, vocab_size=400)
    assert 260 < len(tok) <= 400
    with pytest.raises(UserError, match="at least 260"):
        train_tokenizer(TEXTS, vocab_size=100)


def test_left_padding_per_call_leaves_the_default_side_alone():
    tok = _tokenizer()
    side = tok.padding_side
    batch = tok(["1 + 1", "12 * 12 = 144"], padding=True, padding_side="left")
    assert batch["attention_mask"][0][0] == 0 and batch["input_ids"][0][0] == tok.pad_token_id
    assert tok.padding_side == side
