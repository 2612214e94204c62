"""A checkpoint stores its weights once: in its Hugging Face ``model/`` directory.

A checkpoint holds ``model/`` (what users evaluate) beside Accelerate's state (optimizer,
scheduler, RNG). Accelerate's ``save_state`` would write every prepared model's weights a
second time; ``weights_in_model_dir`` registers a save hook that empties that list and a
load hook that reads the weights back from ``model/`` instead:

* the trained module (the one the checkpoint's saver writes) from ``model/``: its full
  weights (``save_pretrained``'s layout, one file or shards), or for a LoRA model the
  adapter (``adapter_model.safetensors``; the frozen base is the one ``--model`` loads,
  which ``--resume`` checks is unchanged);
* the prepared models' other weights (PPO's value head, a separate critic), small or not
  saved elsewhere, from ``extra_weights.pt`` beside Accelerate's files.

Loading is exact (fp32 tensors copied as saved) and checked: every weight must come back,
tied ones through the tensor they share. DeepSpeed and FSDP save model and optimizer
together in their own formats: there the hooks do nothing (the weights stay twice). A
checkpoint without ``extra_weights.pt`` (written before) loads Accelerate's way.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch

EXTRA_FILE = "extra_weights.pt"
_OWN_FORMAT = ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA")


def applies(acc) -> bool:
    """Whether Accelerate saves plain state dicts here (not an engine's own format)."""
    return getattr(acc.distributed_type, "name", str(acc.distributed_type)) not in _OWN_FORMAT


@contextmanager
def weights_in_model_dir(acc, module):
    """Within the block, ``acc.save_state``/``load_state`` keep the weights of the prepared
    models in ``model/`` (``module``: the trained module the saver writes there) and
    ``extra_weights.pt``, not in Accelerate's own files."""
    if module is None or not applies(acc):
        yield
        return
    module = acc.unwrap_model(module)
    handles = [acc.register_save_state_pre_hook(lambda models, weights, out:
                                                _save_hook(acc, module, models, weights, out)),
               acc.register_load_state_pre_hook(lambda models, inp:
                                                _load_hook(acc, module, models, inp))]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _prefix(root: torch.nn.Module, module: torch.nn.Module) -> str | None:
    """``module``'s name inside ``root`` as a state-dict prefix (``""``: root itself), or None."""
    name = next((n for n, m in root.named_modules() if m is module), None)
    return None if name is None else (f"{name}." if name else "")


def _extra(root: torch.nn.Module, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights of ``root`` outside ``module``."""
    prefix = _prefix(root, module)
    state = root.state_dict()
    if prefix is None:
        return state
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _save_hook(acc, module, models, weights, output_dir) -> None:
    weights.clear()  # Accelerate writes no model*.safetensors
    if acc.is_main_process:
        extra = [{k: v.detach().cpu() for k, v in _extra(acc.unwrap_model(m), module).items()}
                 for m in models]
        torch.save(extra, Path(output_dir) / EXTRA_FILE)


def _load_hook(acc, module, models, input_dir) -> None:
    input_dir = Path(input_dir)
    if not (input_dir / EXTRA_FILE).exists():
        return  # an older checkpoint: Accelerate loads the weights it holds
    extra = torch.load(input_dir / EXTRA_FILE, map_location="cpu", weights_only=True)
    if len(extra) != len(models):
        raise RuntimeError(f"{input_dir / EXTRA_FILE}: {len(extra)} models, expected {len(models)}")
    for m, rest in zip(models, extra, strict=True):
        root = acc.unwrap_model(m)
        loaded = set(rest)
        prefix = _prefix(root, module)
        if prefix is not None:
            loaded |= {prefix + k for k in load_model_dir(module, input_dir / "model")}
        result = root.load_state_dict(rest, strict=False)
        if result.unexpected_keys:
            raise RuntimeError(f"{input_dir}: unexpected weights {result.unexpected_keys[:5]}")
        _check_complete(root, loaded, input_dir)
    models.clear()  # loaded: Accelerate loads no model weights


def _check_complete(root: torch.nn.Module, loaded: set[str], where: Path) -> None:
    """Every weight of ``root`` was loaded, or shares its storage with one that was."""
    state = root.state_dict(keep_vars=True)
    ptrs = {state[k].data_ptr() for k in loaded if k in state}
    missing = [k for k, v in state.items() if k not in loaded and v.data_ptr() not in ptrs]
    if missing:
        raise RuntimeError(f"{where}: no saved value for {missing[:5]}")


def load_model_dir(module: torch.nn.Module, model_dir: Path) -> set[str]:
    """Load ``module``'s weights from the HF directory its saver wrote; returns the keys
    of ``module.state_dict()`` given a value (for LoRA: the adapter's and the frozen base's,
    which is the model ``--model`` names)."""
    from safetensors.torch import load_file

    if hasattr(module, "peft_config"):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(module, load_file(str(model_dir / "adapter_model.safetensors")))
        if result.unexpected_keys:
            raise RuntimeError(f"{model_dir}: unexpected adapter weights {result.unexpected_keys[:5]}")
        return set(module.state_dict())
    index = model_dir / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists()
             else ["model.safetensors"])
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(str(model_dir / name)))
    result = module.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"{model_dir}: unexpected weights {result.unexpected_keys[:5]}")
    return set(state)
