import torch

from reft.models.batching import response_logits
from reft.rollout.rollout import build_sequences
from reft.rollout.sampler import generate, left_pad, sample_batch
from tests.tiny import tiny_model_and_tokenizer


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_greedy_matches_hf_generate_with_padding_and_early_stop():
    model, tok = tiny_model_and_tokenizer()
    model.eval()
    prompts = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14]]
    # make token 20 the EOS so some rows stop early and leave the batch
    ours = sample_batch(model, prompts, max_new_tokens=10, eos_id=20, pad_id=0, greedy=True)
    for p, o in zip(prompts, ours, strict=True):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long),
                             do_sample=False, max_new_tokens=10, pad_token_id=0, eos_token_id=20)
        ref = ref[0, len(p):].tolist()
        if 20 in ref:
            ref = ref[: ref.index(20) + 1]
        assert o == ref


def test_generate_order_samples_and_truncation():
    model, tok = tiny_model_and_tokenizer()
    torch.manual_seed(0)
    prompts = ["Question:\nTom has 3 boxes.\nAnswer reasoning:\n", "Question:\nA\nAnswer reasoning:\n"]
    g = generate(model, tok, prompts, max_new_tokens=6, num_samples=3, batch_size=4)
    assert len(g.texts) == 6 and len(g.completion_ids) == 6
    p0 = tok(prompts[0])["input_ids"]
    assert g.prompt_ids[0] == g.prompt_ids[2] == p0  # samples of one prompt are adjacent
    for c, t in zip(g.completion_ids, g.truncated, strict=True):
        assert 1 <= len(c) <= 6
        assert t == (c[-1] != tok.eos_token_id)


def test_rollout_layout_and_response_logits():
    model, tok = tiny_model_and_tokenizer()
    torch.manual_seed(0)
    g = generate(model, tok, ["Question:\nA\n", "Question:\nTom has 3 boxes.\n"], max_new_tokens=5)
    r = build_sequences(g, tok.pad_token_id)
    P = r.prompt_len
    assert r.input_ids.shape[1] == P + r.response_mask.shape[1]
    for i, c in enumerate(g.completion_ids):
        n = len(c)
        assert r.input_ids[i, P : P + n].tolist() == c
        assert r.response_mask[i].tolist() == [1.0] * n + [0.0] * (r.response_mask.shape[1] - n)
    # logits at P-1+t predict response token t: the greedy-free check is shape + alignment
    logits = model(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=r.position_ids).logits
    assert response_logits(logits, r.prompt_len).shape[:2] == r.response_mask.shape
