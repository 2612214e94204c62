"""The embedded default model: a small Llama trained from scratch (``reft model init``).

The tokenizer is byte-level BPE trained on the task's own text, with every digit
its own token (as Llama and DeepSeek do), so arithmetic is spelled digit by digit
and any text, including newlines, runs of spaces and unicode, round-trips exactly.

Design choices:

* Word embeddings are not tied to the LM head, as in the Llama/CodeLlama models the
  paper fine-tunes; with a ~1k vocabulary the extra head costs ~0.2M parameters.
* The tokenizer does not add ``<s>``/``</s>`` by itself (no post-processor): the
  training code appends eos to targets, and prompts are encoded as they are.
* ``config.json`` carries ``"reft_tiny": true`` so later stages can pick learning
  rates suited to a from-scratch model (:func:`reft.models.loading.is_reft_tiny`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from reft.answers import ANSWER_TRIGGER, COTS
from reft.errors import UserError
from reft.models.loading import TINY_MARK, quiet_saves

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # ids 0, 1, 2, 3
BYTE_ALPHABET = 256

PRESETS: dict[str, dict[str, int]] = {
    # ~2.2M parameters with the default vocabulary
    "tiny": {"vocab_size": 1024, "hidden_size": 192, "layers": 4, "heads": 4, "max_positions": 512},
    # ~6.8M parameters
    "small": {"vocab_size": 1024, "hidden_size": 256, "layers": 8, "heads": 8, "max_positions": 512},
}

PROMPT_STRINGS = [
    "Question:\n", "\nAnswer reasoning:\n", f"{ANSWER_TRIGGER} ",
    "def solution():", "    return result",
]
"""Fixed strings of the ReFT prompts, added to every tokenizer corpus."""


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, *, max_length: int = 512):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Special tokens ``<pad>``=0, ``<s>``=1, ``</s>``=2, ``<unk>``=3 come first, then the
    256 byte tokens, then merges. ``vocab_size`` is an upper bound: a small corpus may
    run out of merges (``len(tokenizer)`` is the real size). ``<unk>`` is never produced
    (every byte has a token) but is set because generic code expects one.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    minimum = BYTE_ALPHABET + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise UserError(f"vocab size {vocab_size} is too small: byte-level BPE needs at least "
                        f"{minimum} (256 bytes + 4 special tokens)")
    tok = Tokenizer(models.BPE(unk_token=UNK))
    # digits first, one per token; ByteLevel then maps bytes to printable symbols
    # (space -> 'Ġ', newline -> 'Ċ') so decoding restores the text byte for byte
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        clean_up_tokenization_spaces=False, model_max_length=max_length,
    )


def synthetic_texts(n: int = 1000, seed: int = 0) -> list[str]:
    """Tokenizer corpus from the embedded synthetic task, in both CoT styles.

    The task is templated: 1000 problems per style learn the same merges as 5000
    (identical token counts on held-out problems) in a fraction of the time.
    """
    from reft.data import synthetic

    texts: list[str] = []
    for cot in COTS:
        texts.extend(_example_texts(synthetic.generate(n, seed=seed, split="train", cot=cot)))
    return texts


def file_texts(path: str | Path) -> list[str]:
    """Tokenizer corpus from a data file (any source ``reft.data.load_examples`` reads)."""
    from reft.data import load_examples

    examples = load_examples(str(path))
    if not examples:
        raise UserError(f"{path}: no examples to train the tokenizer on")
    return _example_texts(examples)


def _example_texts(examples) -> list[str]:
    """Each example as the model will read it: prompt + target, in the CoT's own style."""
    from reft.data.prompts import build_prompt, build_target

    texts = []
    for ex in examples:
        cot = "python" if ex.cot and "def solution" in ex.cot else "nl"
        target = build_target(ex, cot) if ex.cot else f"{ANSWER_TRIGGER} {ex.answer}"
        texts.append(build_prompt(ex.question, cot) + target)
    return texts


def build_config(*, vocab_size: int, hidden_size: int, layers: int, heads: int,
                 max_positions: int, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
    """A ``LlamaConfig`` (RoPE, RMSNorm, SwiGLU) with an MLP ~8/3 x hidden, as Llama."""
    from transformers import LlamaConfig

    for name, value in (("hidden size", hidden_size), ("layers", layers), ("heads", heads),
                        ("max positions", max_positions)):
        if value < 1:
            raise UserError(f"{name} must be positive, got {value}")
    if hidden_size % heads or (hidden_size // heads) % 2:
        raise UserError(f"hidden size {hidden_size} must split into {heads} heads of an even "
                        "size (RoPE rotates pairs of dimensions)")
    intermediate = -(-hidden_size * 8 // 3 // 32) * 32  # round up to a multiple of 32
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=max_positions, rms_norm_eps=1e-6, initializer_range=0.02,
        tie_word_embeddings=False, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id,
    )
    setattr(config, TINY_MARK, True)
    return config


def init_model(out: str | Path, preset: str = "tiny", texts: Iterable[str] | None = None,
               seed: int = 0, **overrides: int | None) -> Path:
    """Train a tokenizer, build a randomly initialised Llama, save both to ``out``.

    ``texts`` default to the synthetic task (both CoT styles); the ReFT prompt strings
    are always added. ``overrides`` replace preset values (``vocab_size``, ``hidden_size``,
    ``layers``, ``heads``, ``max_positions``; ``None`` keeps the preset's). ``out`` must not
    exist or be empty; it is written atomically (a temporary sibling renamed into place).
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r} (choose {', '.join(PRESETS)})")
    unknown = set(overrides) - set(PRESETS[preset])
    if unknown:
        raise TypeError(f"unknown override(s): {', '.join(sorted(unknown))}")
    sizes = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    out = Path(out).expanduser()
    check_out(out)

    import torch
    from transformers import LlamaForCausalLM

    corpus = list(texts) if texts is not None else synthetic_texts(seed=seed)
    tokenizer = train_tokenizer(corpus + PROMPT_STRINGS, sizes["vocab_size"],
                                max_length=sizes["max_positions"])
    config = build_config(**{**sizes, "vocab_size": len(tokenizer)},
                          pad_id=tokenizer.pad_token_id, bos_id=tokenizer.bos_token_id,
                          eos_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    _save_atomically(out, model, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"built a {n_params / 1e6:.2f}M-parameter Llama (vocab {config.vocab_size}, "
          f"hidden {config.hidden_size}, {config.num_hidden_layers} layers, "
          f"{config.num_attention_heads} heads) -> {out}")
    return out


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that exists and is not an empty folder."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; choose another --out or remove it")


def _save_atomically(out: Path, model, tokenizer) -> None:
    """Write into a hidden sibling, then rename: a crash never leaves a half-written model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with quiet_saves():
            model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        check_out(out)  # another process may have filled it meanwhile
        os.replace(tmp, out)  # replaces an empty directory atomically on POSIX
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
