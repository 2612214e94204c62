"""A padder for the "padding does not change the result" tests of every masked function."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor


@dataclass(frozen=True)
class Padder:
    """Surrounds ``(B, T)`` tensors with extra columns: ``left`` before (a prompt) and
    ``right`` after (right padding). Values get nan by default, the worst garbage there
    is; masks get 0."""

    left: int = 2
    right: int = 3

    def __call__(self, x: Tensor, fill: float = float("nan")) -> Tensor:
        shape = (x.shape[0], self.left + x.shape[1] + self.right, *x.shape[2:])
        out = torch.full(shape, fill, dtype=x.dtype)
        out[:, self.left : self.left + x.shape[1]] = x
        return out

    def real(self, x: Tensor) -> Tensor:
        """The original columns of a padded ``(B, T')`` tensor."""
        return x[:, self.left : x.shape[1] - self.right]

    def outside(self, x: Tensor) -> Tensor:
        """The added columns, concatenated."""
        return torch.cat([x[:, : self.left], x[:, x.shape[1] - self.right :]], dim=1)


@pytest.fixture
def pad() -> Padder:
    return Padder()
