import torch

from reft.models.batching import pad_rows, positions


def test_right_and_left_padding():
    ids, mask = pad_rows([[5, 6, 7], [8]], 0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_rows([[5, 6, 7], [8]], 9, side="left")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_empty_rows_and_min_width():
    ids, mask = pad_rows([[], []], 4, min_width=1)
    assert ids.tolist() == [[4], [4]] and mask.tolist() == [[0], [0]]


def test_positions_count_real_tokens_only():
    # left padding: the first real token is position 0; right padding keeps counting up to
    # the last real token, then repeats it
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert positions(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]
