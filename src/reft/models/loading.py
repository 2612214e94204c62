"""Loading Hugging Face causal LMs and tokenizers, failing fast and in one line.

A model is named by a local directory (``config.json`` inside) or a Hugging Face hub
id. Local directories never touch the network. A hub id is first looked up in the
local cache (``local_files_only=True``); the hub itself is only asked when it can be
reached, because ``huggingface_hub`` retries an unreachable host for ~25 s before
giving up. Every failure is a :class:`reft.errors.UserError` saying what was tried.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from reft.errors import UserError

if TYPE_CHECKING:
    import torch

# names accepted for --dtype -> torch attribute (torch is imported only when needed)
_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}
# owner/name as the hub spells it: letters, digits, '-', '_', '.'; no '..', no leading '.'
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = ("1", "true", "yes", "on")

TINY_MARK = "reft_tiny"
"""Extra ``config.json`` key that ``reft model init`` sets on the models it builds."""


def resolve_dtype(name: str | torch.dtype, device: str | torch.device | None = None) -> torch.dtype:
    """The weights dtype for ``name`` on ``device``.

    ``"auto"`` is bfloat16 on a CUDA device with native bf16 (a GPU that only emulates it
    counts as without) and float32 everywhere else (CPU, older GPUs: float16 weights are
    not picked automatically because they overflow easily). Training never steps weights
    in this dtype: trainable weights are loaded in float32 (master weights), and this
    dtype applies to inference and to frozen copies (the reference model, a LoRA base). ``device=None`` means CPU, the
    device ``from_pretrained`` loads onto. Explicit names (``float32``/``fp32``,
    ``bfloat16``/``bf16``, ``float16``/``fp16``) are honoured as given.
    """
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name == "auto":
        dev = torch.device(device) if device is not None else torch.device("cpu")
        from reft.runtime.precision import native_bf16

        if dev.type == "cuda" and torch.cuda.is_available() and native_bf16():
            return torch.bfloat16
        return torch.float32
    if name not in _DTYPES:
        raise UserError(f"unknown dtype {name!r} (choose auto, float32, bfloat16 or float16)")
    return getattr(torch, _DTYPES[name])


@contextlib.contextmanager
def quiet_saves():
    """Hide transformers' own progress bars inside the block: ``save_pretrained``'s "Writing
    model shards" and ``from_pretrained``'s "Loading weights", which transformers 5 shows
    even for a one-file model on every save and load. The previous setting comes back
    afterwards. reft's own saves and loads (``load_model`` and the other loaders here,
    the training savers, ``reft model init``) all run inside it.

    Only transformers' switch is turned: ``transformers.utils.logging.disable_progress_bar()``
    would also turn off, and ``enable_progress_bar()`` turn back on, the hub's download bars
    (and override ``HF_HUB_DISABLE_PROGRESS_BARS``). Works as a decorator too.
    """
    from transformers.utils import logging as hf_logging

    if not hasattr(hf_logging, "_tqdm_active"):  # not the transformers this was written for
        yield
        return
    was = hf_logging._tqdm_active
    hf_logging._tqdm_active = False
    try:
        yield
    finally:
        hf_logging._tqdm_active = was


def ensure_pad_token(tokenizer):
    """Give a tokenizer without a pad token one, in place, and return it.

    Many causal LMs (Llama, Mistral, GPT-2, ...) ship without a pad token. Padding
    with the eos token (or, failing that, unk) needs no new embedding row; it is
    safe because reft always derives masks from ``attention_mask``, never by
    comparing ids with ``pad_token_id`` (which would also mask real eos tokens).
    """
    if tokenizer.pad_token is not None:
        return tokenizer
    for name in ("eos_token", "unk_token"):
        token = getattr(tokenizer, name)
        if token is not None:
            tokenizer.pad_token = token
            return tokenizer
    raise UserError("the tokenizer has no pad, eos or unk token to pad batches with; "
                    "pass --pad-token-id ID")


def load_tokenizer(name_or_path: str | Path, *, ensure_pad: bool = True,
                   eos_token_id: int | None = None, pad_token_id: int | None = None):
    """``AutoTokenizer`` for a local directory or hub id (``PreTrainedTokenizerBase``).

    The padding side is left as the tokenizer was saved: callers that generate pass
    ``padding_side="left"`` per call instead of changing shared state. The tokenizer
    always has an eos id afterwards and, with ``ensure_pad`` (the default), a pad id:
    see :func:`set_special_ids` (``eos_token_id``/``pad_token_id``: ``--eos-token-id``,
    ``--pad-token-id``; None = the tokenizer's own, else the model config's).
    """
    from transformers import AutoTokenizer

    tokenizer = _load("tokenizer", AutoTokenizer.from_pretrained, name_or_path,
                      ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"))
    return set_special_ids(tokenizer, name_or_path, eos_token_id=eos_token_id,
                           pad_token_id=pad_token_id, ensure_pad=ensure_pad)


def token_ids(cfg: Any) -> dict[str, int | None]:
    """A config's ``--eos-token-id``/``--pad-token-id``, as :func:`load_tokenizer` keywords."""
    return {"eos_token_id": getattr(cfg, "eos_token_id", None),
            "pad_token_id": getattr(cfg, "pad_token_id", None)}


def set_special_ids(tokenizer, source: str | Path, *, eos_token_id: int | None = None,
                    pad_token_id: int | None = None, ensure_pad: bool = True):
    """Give ``tokenizer`` its eos and pad ids, in place, and return it.

    Each is the id given, else the tokenizer's own, else the one the model config names
    (``config.json``, then ``generation_config.json`` beside the tokenizer in ``source``):
    Galactica, for one, ships a tokenizer without eos or pad tokens, its config naming
    eos 2 and pad 1 (the ids the ReFT release hard-codes). A pad found nowhere is the eos
    (see :func:`ensure_pad_token`). An eos found nowhere is a one-line UserError naming
    ``--eos-token-id``: without one, sampling never stops and SFT targets end in None.
    """
    found: dict[str, int] | None = None

    def from_config(key: str) -> int | None:
        nonlocal found
        if found is None:
            found = _config_token_ids(source)
        return found.get(key)

    eos = eos_token_id if eos_token_id is not None else tokenizer.eos_token_id
    if eos is None:
        eos = from_config("eos_token_id")
    if eos is None:
        raise UserError(f"the tokenizer of {str(source)!r} has no eos token and its model config "
                        "names none: pass --eos-token-id ID (the token that ends a completion)")
    _set_token(tokenizer, "eos", eos, given=eos_token_id is not None)
    pad = pad_token_id
    if pad is None and ensure_pad and tokenizer.pad_token is None:
        pad = from_config("pad_token_id")
    if pad is not None:
        _set_token(tokenizer, "pad", pad, given=pad_token_id is not None)
    elif ensure_pad:
        ensure_pad_token(tokenizer)
    return tokenizer


def _set_token(tokenizer, name: str, token_id: int, given: bool) -> None:
    if getattr(tokenizer, f"{name}_token_id") == token_id:
        return
    token = tokenizer.convert_ids_to_tokens(token_id) if 0 <= token_id < len(tokenizer) else None
    if token is None:
        flag = f"--{name}-token-id"
        where = flag if given else f"the model config's {name} id"
        raise UserError(f"{where} {token_id} is not a token id of this tokenizer "
                        f"(0 to {len(tokenizer) - 1}); pass {flag} ID")
    setattr(tokenizer, f"{name}_token", token)


def _config_token_ids(source: str | Path) -> dict[str, int]:
    """The eos and pad ids ``config.json`` names, else ``generation_config.json`` (the
    first of a list); nothing when neither can be read."""
    from transformers import AutoConfig, GenerationConfig

    found: dict[str, int] = {}
    for what, loader, marker in (("model config", AutoConfig.from_pretrained, "config.json"),
                                 ("generation config", GenerationConfig.from_pretrained,
                                  "generation_config.json")):
        try:
            config = _load(what, loader, source, (marker,))
        except UserError:
            continue
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        for key in ("eos_token_id", "pad_token_id"):
            value = getattr(config, key, None)
            value = getattr(text, key, None) if value is None else value
            if isinstance(value, list | tuple):
                value = value[0] if value else None
            if key not in found and isinstance(value, int) and not isinstance(value, bool):
                found[key] = value
    return found


def load_model(name_or_path: str | Path, *, dtype: str | torch.dtype = "auto",
               device: str | torch.device | None = None):
    """``AutoModelForCausalLM`` from a local directory or hub id, in ``dtype``, on ``device``.

    ``device=None`` leaves the model on CPU (for accelerate to place); ``dtype="auto"``
    is resolved for ``device`` by :func:`resolve_dtype`.
    """
    from transformers import AutoModelForCausalLM

    def from_pretrained(source: str, **kwargs: Any):
        if kwargs.get("local_files_only"):
            # transformers looks for a peft adapter on the hub even with local_files_only
            kwargs["adapter_kwargs"] = {"local_files_only": True}
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)

    torch_dtype = resolve_dtype(dtype, device)
    model = _load("model", from_pretrained, name_or_path, ("config.json",), dtype=torch_dtype)
    if device is not None:
        model.to(device)
    return model


def is_reft_tiny(model_or_path: Any) -> bool:
    """True for a model built by ``reft model init`` (used to pick tiny-model learning rates).

    Accepts a model (also a peft model or a value-head wrapper), its config, or a
    local directory; anything else (e.g. a hub id) is not a reft tiny model.
    """
    if isinstance(model_or_path, str | os.PathLike):
        config_file = Path(model_or_path).expanduser() / "config.json"
        if not config_file.is_file():
            return False
        try:
            return bool(json.loads(config_file.read_text()).get(TINY_MARK, False))
        except (OSError, ValueError):
            return False
    config = getattr(model_or_path, "config", model_or_path)
    return bool(getattr(config, TINY_MARK, False))


@quiet_saves()
def _load(what: str, loader: Callable[..., Any], name_or_path: str | Path,
          markers: tuple[str, ...], **kwargs: Any) -> Any:
    """Run ``loader`` on a local directory or a hub id; every failure is a one-line UserError."""
    name = str(name_or_path).strip()
    if not name:
        raise UserError(f"no {what} given: pass a local model directory or a hub id")
    path = Path(name).expanduser()
    if path.is_dir():
        if not any((path / m).is_file() for m in markers):
            hint = " (it holds a peft adapter: merge it into its base model)" if (
                path / "adapter_config.json").is_file() else ""
            raise UserError(f"{path} is not a {what} directory: no {' or '.join(markers)} in it{hint}")
        return _call(loader, str(path), what, local_files_only=True, **kwargs)
    if path.exists():
        raise UserError(f"{what} {name!r} is a file; pass the model directory that holds it")
    if not _HUB_ID.match(name) or ".." in name:
        raise UserError(f"{what} directory {name!r} does not exist "
                        "(pass a local directory, e.g. one written by 'reft model init')")
    try:
        return loader(name, local_files_only=True, **kwargs)
    except OSError:
        pass  # not cached: try the hub below if it can be reached
    except (ValueError, KeyError) as e:
        raise _one_line(what, name, e) from e
    endpoint = _hub_endpoint()
    if not _hub_reachable(endpoint):
        raise UserError(f"{what} {name!r}: no such local directory, not in the Hugging Face cache, "
                        f"and {endpoint} cannot be reached; pass a local model directory "
                        "(e.g. one written by 'reft model init')")
    return _call(loader, name, what, **kwargs)


def _call(loader: Callable[..., Any], source: str, what: str, **kwargs: Any) -> Any:
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise _one_line(what, source, e) from e


def _one_line(what: str, source: str, error: Exception) -> UserError:
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return UserError(f"could not load {what} from {source!r}: {first.strip()}")


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hub_reachable(endpoint: str, timeout_s: float = 3.0) -> bool:
    """A quick TCP probe of the hub, so an offline machine fails in milliseconds.

    Offline mode (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``) means unreachable; with
    a proxy configured the probe is skipped and the hub client is left to try.
    """
    if any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False
