"""The frozen reference policy PPO's KL penalty is measured against: the warm-up model."""

from __future__ import annotations

import copy

from reft.runtime.dist import zero_stage


def reference_model(cfg, lm, acc):
    """The frozen warm-up model. With LoRA it is the same network with adapters disabled;
    under ZeRO-3 it is sharded like the policy."""
    if cfg.lora_r > 0:
        return AdaptersOff(lm)
    from reft.models.loading import load_model

    # under ZeRO-3 Accelerate has from_pretrained load straight into shards (zero.Init)
    ref = load_model(cfg.model, dtype=cfg.dtype, device=None if zero_stage(acc) == 3 else acc.device)
    ref.requires_grad_(False)
    return zero3_inference(ref, acc).eval()


def zero3_inference(model, acc):
    """Under DeepSpeed ZeRO-3, ``model`` as an inference-only ZeRO-3 engine (no optimizer):
    its parameters stay sharded and each layer's are gathered as it runs, as TRL's
    ``prepare_deepspeed`` does for its reference model. Otherwise ``model`` unchanged."""
    if zero_stage(acc) != 3:
        return model
    import deepspeed

    ds = copy.deepcopy(acc.state.deepspeed_plugin.deepspeed_config)
    for key in ("optimizer", "scheduler"):
        ds.pop(key, None)
    hidden = model.config.hidden_size
    ds["zero_optimization"].update(reduce_bucket_size=hidden * hidden,
                                   stage3_param_persistence_threshold=10 * hidden,
                                   stage3_prefetch_bucket_size=int(0.9 * hidden * hidden))
    engine, *_ = deepspeed.initialize(model=model, config=ds)
    return engine


class AdaptersOff:
    """Calls a peft model with its adapters disabled: the reference policy, no second copy."""

    def __init__(self, peft_model):
        self.model = peft_model

    def __call__(self, **kw):
        with self.model.disable_adapter():
            return self.model(**kw)
