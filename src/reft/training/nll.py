"""The token NLL of (question, CoT) pairs: SFT's loss, which self-training trains on too.

Prompt and target are tokenized separately so the boundary is exact and the prompt ids
equal those seen at generation time; only target tokens (CoT + eos) carry labels.
"""

from __future__ import annotations

import torch

from reft.data.records import Example
from reft.models.batching import pad_rows

IGNORE = -100


def sft_pairs(examples: list[Example], cot: str, template: str) -> tuple[list[str], list[str]]:
    """(prompts, targets) of ``examples``."""
    from reft.data.prompts import build_prompt, build_target

    prompts = [build_prompt(e.question, cot=cot, template=template) for e in examples]
    targets = [build_target(e, cot=cot) for e in examples]
    return prompts, targets


def encode_pairs(
    prompts: list[str], targets: list[str], tokenizer, max_length: int
) -> list[dict[str, list[int]]]:
    """Token ids and labels (prompt tokens = -100) for each prompt + target + EOS."""
    p_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
    t_ids = tokenizer(targets, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for p, t in zip(p_ids, t_ids, strict=True):
        ids = (p + t + [eos])[:max_length]
        labels = ([IGNORE] * len(p) + t + [eos])[:max_length]
        out.append({"input_ids": ids, "labels": labels})
    return out


def n_targets(feature: dict[str, list[int]]) -> int:
    """Tokens of ``feature`` the loss is taken on (labelled, after the first position)."""
    return sum(x != IGNORE for x in feature["labels"][1:])


def collate(features: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded pairs into (B, T) tensors."""
    ids, mask = pad_rows([f["input_ids"] for f in features], pad_id)
    labels, _ = pad_rows([f["labels"] for f in features], IGNORE)
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def token_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over labelled (CoT) tokens, and their count."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    logits = logits[:, :-1].float()
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return nll, (labels != IGNORE).sum()
