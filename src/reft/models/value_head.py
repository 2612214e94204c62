"""The ReFT value model: a linear head on a causal LM's last hidden state.

ReFT (Luong et al., 2024, Sec. 3.2) shares the policy's backbone with the critic
and puts a scalar head on the last hidden state; :class:`SeparateCritic` is the
paper's ablation with a separate copy of the warm-up model.

The head is a ``Linear(hidden, 1)`` with weight ~ N(0, 1e-3) and zero bias: values
start at ~0, the right scale for rewards in [0, 1], while its gradient to the
backbone is non-zero from the first step. It is computed in float32 whatever the
backbone's dtype and under autocast too, because small value errors are amplified by GAE.

Saved layout: the LM's own ``save_pretrained`` directory (so a plain
``AutoModelForCausalLM.from_pretrained`` still loads the policy) plus
``value_head.safetensors``. A peft model saves its adapter the peft way; merge it
first (``merge_and_unload``) for a directory that loads without peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from reft.errors import UserError
from reft.models.batching import positions, response_logits
from reft.models.loading import load_model, quiet_saves

VALUE_HEAD_FILE = "value_head.safetensors"

# config keys of models whose logits are more than lm_head(hidden) (Gemma 2 soft-capping,
# Cohere/Granite scaling): those take the generic output_hidden_states path
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def new_value_head(hidden_size: int, std: float = 1e-3) -> nn.Linear:
    """A float32 ``Linear(hidden_size, 1)``, weight ~ N(0, std), bias 0."""
    head = nn.Linear(hidden_size, 1, dtype=torch.float32)
    nn.init.normal_(head.weight, std=std)
    nn.init.zeros_(head.bias)
    return head


class _ValueModel(nn.Module):
    """A causal LM plus a value head; subclasses choose what ``forward`` returns."""

    def __init__(self, lm: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.lm = lm
        self.value_head = value_head if value_head is not None else new_value_head(_hidden_size(lm))
        if self.value_head.in_features != _hidden_size(lm):
            raise UserError(f"value head expects hidden size {self.value_head.in_features}, "
                            f"the model has {_hidden_size(lm)}")

    @property
    def config(self):
        """The LM's config (lets ``is_reft_tiny`` and other config readers see through)."""
        return self.lm.config

    def _run(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None,
             logits: bool, prompt_len: int | None = None) -> tuple[Tensor | None, Tensor]:
        """(logits (B, T, V) or None, values (B, T) float32); with ``prompt_len`` only at
        the positions predicting the response tokens after it (``response_logits``): the
        LM head runs on those alone."""
        if position_ids is None:
            position_ids = positions(attention_mask)
        hidden, out_logits = _last_hidden(self.lm, input_ids, attention_mask, position_ids, logits,
                                          prompt_len)
        return out_logits, self.values(hidden)

    def values(self, hidden: Tensor) -> Tensor:
        """(..., H) last hidden states -> (...) values, in float32 even under autocast (which
        would run this linear in bf16): a per-token KL reward of ~5e-4 is below bf16's
        resolution near 1, and GAE amplifies value errors."""
        head = self.value_head
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            values = nn.functional.linear(hidden.float(), head.weight.float(), head.bias.float())
        return values.squeeze(-1)

    def save_pretrained(self, directory: str | Path, **kwargs) -> None:
        """The LM's ``save_pretrained(directory, **kwargs)`` plus ``value_head.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        with quiet_saves():
            self.lm.save_pretrained(directory, **kwargs)
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.value_head.state_dict().items()}
        save_file(state, str(directory / VALUE_HEAD_FILE))

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, dtype: str | torch.dtype = "auto",
                        device: str | torch.device | None = None):
        """Load the LM (see ``load_model``) and its value head if saved, else a fresh head."""
        lm = load_model(name_or_path, dtype=dtype, device=device)
        head = load_value_head(name_or_path, _hidden_size(lm))
        model = cls(lm, head)
        return model.to(device) if device is not None else model


class PolicyWithValueHead(_ValueModel):
    """The policy and its critic sharing one backbone (the paper's setting).

    ``forward`` returns the policy's logits and the critic's values from a single
    pass. ``policy`` is the wrapped causal LM (possibly a peft model).
    """

    @property
    def policy(self) -> nn.Module:
        return self.lm

    def forward(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor | None = None,
                prompt_len: int | None = None) -> tuple[Tensor, Tensor]:
        """input_ids, attention_mask (B, T) -> logits (B, T, V), values (B, T) float32.

        ``position_ids`` default to positions counted over real tokens, so a
        left-padded batch gives the same outputs as the unpadded sequences. With
        ``prompt_len`` both are returned only at the positions predicting the response
        tokens (``response_logits``): the LM head never sees the prompt's positions.
        """
        logits, values = self._run(input_ids, attention_mask, position_ids, logits=True,
                                   prompt_len=prompt_len)
        return logits, values


class SeparateCritic(_ValueModel):
    """A critic with its own copy of a causal LM (the paper's 'separate value model' ablation).

    The LM head is kept (so the saved directory is a normal causal-LM checkpoint) but
    frozen and never run.
    """

    def __init__(self, lm: nn.Module, value_head: nn.Linear | None = None):
        super().__init__(lm, value_head)
        base = _base(lm)
        output, inputs = base.get_output_embeddings(), base.get_input_embeddings()
        tied = output is not None and inputs is not None and output.weight is inputs.weight
        if output is not None and not tied and _fast_path(lm):
            output.requires_grad_(False)

    def forward(self, input_ids: Tensor, attention_mask: Tensor,
                position_ids: Tensor | None = None) -> Tensor:
        """input_ids, attention_mask (B, T) -> values (B, T) float32."""
        return self._run(input_ids, attention_mask, position_ids, logits=False)[1]


def load_value_head(name_or_path: str | Path, hidden_size: int) -> nn.Linear:
    """The value head saved in a local directory, or a fresh one when there is none."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    head = new_value_head(hidden_size)
    path = Path(name_or_path).expanduser() / VALUE_HEAD_FILE
    if not path.is_file():
        return head
    try:
        head.load_state_dict(load_file(str(path)))
    except (RuntimeError, SafetensorError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a value head for hidden size {hidden_size} ({first})") from e
    return head


def _base(lm: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected in place)."""
    return lm.get_base_model() if hasattr(lm, "get_base_model") else lm


def _hidden_size(lm: nn.Module) -> int:
    """Width of the last hidden state: the LM head's input (differs from hidden_size in OPT)."""
    output = _base(lm).get_output_embeddings()
    if isinstance(output, nn.Linear):
        return output.in_features
    config = lm.config.get_text_config() if hasattr(lm.config, "get_text_config") else lm.config
    return config.hidden_size


def _fast_path(lm: nn.Module) -> bool:
    """Whether logits are just ``lm_head(decoder(x))`` so the decoder can be run directly."""
    base = _base(lm)
    config = base.config
    if any(getattr(config, key, None) for key in _LOGIT_TRANSFORMS):
        return False
    if not hasattr(base, "get_decoder") or base.get_output_embeddings() is None:
        return False
    try:
        decoder = base.get_decoder()
    except (AttributeError, NotImplementedError, ValueError):
        return False
    return decoder is not None and decoder is not base


def _last_hidden(lm: nn.Module, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor,
                 logits: bool, prompt_len: int | None = None) -> tuple[Tensor, Tensor | None]:
    """(last hidden state (B, T, H), logits (B, T, V) or None), with ``prompt_len`` sliced
    to the response-predicting positions (``response_logits``).

    Runs the decoder and the LM head separately when that is equivalent, which avoids
    materialising every layer's hidden states, and applies the head to the kept positions
    only; otherwise asks the full model for them.
    """
    def keep(t: Tensor) -> Tensor:
        return t if prompt_len is None else response_logits(t, prompt_len)

    inputs = {"input_ids": input_ids, "attention_mask": attention_mask,
              "position_ids": position_ids, "use_cache": False}
    if _fast_path(lm):
        base = _base(lm)
        out = base.get_decoder()(**inputs)
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is not None:
            hidden = keep(hidden)
            return hidden, base.get_output_embeddings()(hidden) if logits else None
    out = lm(**inputs, output_hidden_states=True)
    return keep(out.hidden_states[-1]), keep(out.logits) if logits else None
