"""Dropout off for PPO's forwards, with gradient checkpointing kept working.

PPO's ratio ``pi(a|s) / pi_old(a|s)`` must be exactly 1 at the first mini-batch: the
rollout and the update see the same weights. With dropout on (Galactica ships with 0.1)
each forward draws a different mask, the first ratio is already 0.98-1.04 and the clip
acts on noise. The authors' release runs these forwards under ``model.eval()``.

Transformers gates dropout on ``module.training``, so ``eval()`` is the dependable switch.
It also gates gradient checkpointing on the checkpointed layer's own ``training`` flag;
those layers are flagged as training again (their own flag only) with every dropout
probability inside them set to 0, so checkpointing still saves memory.
"""

from __future__ import annotations

from torch import nn

# float attributes that transformers' layers read as dropout probabilities
_DROPOUT_ATTRS = ("dropout", "attention_dropout", "activation_dropout", "hidden_dropout",
                  "resid_dropout", "embed_dropout", "layerdrop")


def dropout_off(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode, except checkpointed layers (see the module doc); in place."""
    model.eval()
    for module in model.modules():
        if getattr(module, "gradient_checkpointing", False) is True and module is not model:
            module.training = True
            for sub in module.modules():
                if isinstance(sub, nn.Dropout):
                    sub.p = 0.0
                for name in _DROPOUT_ATTRS:
                    if isinstance(getattr(sub, name, None), float):
                        setattr(sub, name, 0.0)
    return model
