"""The reranker: a sequence classifier that scores P(correct | question, CoT).

The score is read at the last non-pad token of ``prompt + completion + eos``. Batches
are padded on the right, where Hugging Face's ``*ForSequenceClassification`` takes the
rightmost token that is not ``pad_token_id``: the eos when pad and eos differ, the last
completion token when the tokenizer pads with eos. Either way training and scoring
read the same position. ``reft.training.reranker`` trains it; evaluation's rerank@k
scores with ``Reranker.score``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reft.errors import UserError
from reft.models.batching import pad_rows
from reft.runtime.dist import default_device

MAX_LENGTH_KEY = "reft_reranker_max_length"
"""Extra ``config.json`` key: the truncation length the classifier was trained with."""


def encode_scored(prompts: list[str], completions: list[str], tokenizer, max_length: int
                  ) -> list[list[int]]:
    """Token ids of each ``prompt + completion + eos``, the same split as SFT and sampling.

    Too-long inputs keep their last ``max_length`` tokens: the end of a solution (its
    final steps and answer) is what decides correctness.
    """
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    c_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [(p + c + [eos])[-max_length:] for p, c in zip(p_ids, c_ids, strict=True)]


def sequence_logits(model, rows: list[list[int]], pad_id: int, device) -> torch.Tensor:
    """(B,) float32 logits of P(correct) for a batch of encoded sequences."""
    ids, mask = pad_rows(rows, pad_id)
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
    return out.logits.squeeze(-1).float()


def load_classifier(name_or_path: str | Path, dtype: str = "auto", device=None):
    """``AutoModelForSequenceClassification`` with one output; a causal LM gets a new score head."""
    from transformers import AutoModelForSequenceClassification

    from reft.models.loading import _load, resolve_dtype

    def from_pretrained(source: str, **kwargs: Any):
        return AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, **kwargs)

    model = _load("model", from_pretrained, name_or_path, ("config.json",),
                  dtype=resolve_dtype(dtype, device))
    if device is not None:
        model.to(device)
    return model


@dataclass
class Reranker:
    """A trained classifier and its tokenizer; ``score`` is the ``rerank_fn`` of evaluation."""

    model: Any
    tokenizer: Any
    max_length: int = 512
    batch_size: int = 32

    @classmethod
    def load(cls, path: str | Path, dtype: str = "auto", device=None, batch_size: int = 32) -> Reranker:
        """From ``OUT/final`` of ``reft reranker train`` (or ``OUT`` itself)."""
        from reft.models.loading import load_tokenizer

        path = Path(path)
        if (path / "final" / "config.json").is_file():
            path = path / "final"
        config_file = path / "config.json"
        if config_file.is_file() and MAX_LENGTH_KEY not in json.loads(config_file.read_text()):
            raise UserError(f"{path} is not a reranker (train one with 'reft reranker train')")
        if device is None:
            device = default_device()
        model = load_classifier(path, dtype=dtype, device=device).eval()
        tokenizer = load_tokenizer(path)
        return cls(model, tokenizer, getattr(model.config, MAX_LENGTH_KEY, 512), batch_size)

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """P(correct) of each (prompt, completion), in the order given."""
        rows = encode_scored(prompts, completions, self.tokenizer, self.max_length)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # little padding per batch
        probs = [0.0] * len(rows)
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            logits = sequence_logits(self.model, [rows[j] for j in idx], self.tokenizer.pad_token_id, device)
            for j, p in zip(idx, torch.sigmoid(logits).tolist(), strict=True):
                probs[j] = p
        self.model.train(was_training)
        return probs
