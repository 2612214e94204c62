from types import SimpleNamespace

import torch

from reft.training.loop import epoch_batches
from reft.training.nll import IGNORE, collate, encode_pairs, token_nll
from tests.tiny import tiny_model_and_tokenizer


class _FixedLogits(torch.nn.Module):
    """A stand-in model that returns given logits, so gradients w.r.t. them can be read."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.logits)


def test_encode_pairs_masks_prompt_and_appends_eos():
    _, tok = tiny_model_and_tokenizer()
    prompt, target = "Question:\nTom has 3 boxes.\nAnswer reasoning:\n", "3 * 12 = 36"
    (f,) = encode_pairs([prompt], [target], tok, max_length=512)
    p_ids = tok(prompt)["input_ids"]
    t_ids = tok(target, add_special_tokens=False)["input_ids"]
    assert f["input_ids"] == p_ids + t_ids + [tok.eos_token_id]
    assert f["labels"] == [IGNORE] * len(p_ids) + t_ids + [tok.eos_token_id]


def test_prompt_tokens_contribute_nothing_to_the_loss():
    _, tok = tiny_model_and_tokenizer()
    feats = encode_pairs(["Question:\nA b c\nAnswer reasoning:\n", "Question:\nTom\nAnswer reasoning:\n"],
                         ["1 + 2 = 3", "4"], tok, max_length=512)
    batch = collate(feats, tok.pad_token_id)
    B, T = batch["input_ids"].shape
    logits = torch.randn(B, T, len(tok), requires_grad=True)
    nll, count = token_nll(_FixedLogits(logits), batch)
    nll.backward()
    # position t predicts token t+1: only positions whose next token is a CoT token get gradient
    predicts_cot = torch.zeros(B, T, dtype=torch.bool)
    predicts_cot[:, :-1] = batch["labels"][:, 1:] != IGNORE
    grad_norm = logits.grad.abs().sum(-1)
    assert torch.all(grad_norm[~predicts_cot] == 0)
    assert torch.all(grad_norm[predicts_cot] > 0)
    # and the value is the hand-summed NLL of exactly those tokens
    logp = torch.log_softmax(logits.detach(), -1)
    manual = -sum(logp[b, t, batch["input_ids"][b, t + 1]] for b in range(B) for t in range(T - 1)
                  if predicts_cot[b, t])
    assert torch.allclose(nll.detach(), manual)
    assert count == predicts_cot.sum()


def test_padding_does_not_change_the_loss():
    model, tok = tiny_model_and_tokenizer()
    feats = encode_pairs(["Question:\nA\nAnswer reasoning:\n"], ["1 + 2 = 3"], tok, max_length=512)
    long = encode_pairs(["Question:\nTom has 3 boxes of 12 pens.\nAnswer reasoning:\n"],
                        ["3 * 12 = 36 pens, 36 - 5 = 31"], tok, max_length=512)
    alone, _ = token_nll(model, collate(feats, tok.pad_token_id))
    padded_batch = collate(feats + long, tok.pad_token_id)
    only_first = {k: v[:1] for k, v in padded_batch.items()}  # row 0 now carries right padding
    padded, _ = token_nll(model, only_first)
    assert torch.allclose(alone, padded, atol=1e-5)


def test_epoch_batches_are_a_fixed_permutation():
    a = epoch_batches(10, 4, seed=1, epoch=0)
    assert a == epoch_batches(10, 4, seed=1, epoch=0)
    assert a != epoch_batches(10, 4, seed=1, epoch=1)
    assert sorted(sum(a, [])) == list(range(10)) and [len(b) for b in a] == [4, 4, 2]
