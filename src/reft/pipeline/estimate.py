"""Peak accelerator memory of one process of a stage, from the model's config alone.

``reft pipeline CONFIG --dry-run`` prints this for every stage; nothing here loads weights
or imports torch (a transformers config, a plain dict or a ``ModelDims`` is enough).

What is counted, in bytes, following how reft lays a run out:

* weights: trainable weights are fp32 master copies (4 B/param,
  ``runtime.precision.master_params``); under 16-bit ``--mixed-precision`` autocast keeps a
  16-bit copy of every weight a linear layer reads (2 B/param: its cast cache during
  sampling, the backward's saved inputs during an update). With LoRA the base is frozen in
  ``--dtype`` and only the adapters (rank r on every linear layer of the decoder) are fp32.
  Inference (eval, sampling for self-training and the reranker) holds the model in
  ``--dtype``. Under DeepSpeed (``zero2``/``zero3``) the engine holds the model in bf16 and
  its own fp32 masters with the optimizer state (the ZeRO paper's 2 + 2 + 12 B/param).
* gradients: fp32, 4 B per trainable param (DeepSpeed: 2 B, bf16).
* optimizer: AdamW's two fp32 moments, 8 B per trainable param (DeepSpeed: + the 4 B fp32
  master). On a GPU torch's multi-tensor AdamW also makes one fp32 temporary per param
  during its step (``ADAM_TEMP_BYTES``).
* reference: PPO's frozen copy of the warm-up in ``--dtype`` (none with LoRA: the adapters
  are switched off instead, ``training.reference``).
* KV cache: the sampler allocates, at prefill, room for the longest prompt plus
  ``max_new_tokens`` for every row of a generation batch:
  rows x (prompt + new) x layers x 2 x kv_heads x head_dim x bytes; plus the sampler's
  per-step (rows x vocab) buffers and one layer's prefill activations.
* logits: SFT-style losses (``training.nll``) take the full (B, T, V) logits to fp32 and
  keep them, a contiguous copy and their log-softmax: ``SFT_LOGIT_BYTES`` = 12 B per
  element at the loss's peak. PPO's update runs the LM head on the response positions
  only (``models.actor_critic``); ``algorithms.logits`` keeps each row's fp32 logits for
  the backward and the backward holds the row gradients and their stack in the compute
  dtype: 4 + 2 x compute bytes per element, plus one row's fp32 working copies.
* activations: what a decoder layer saves for backward, per token (``LAYER_STREAM`` tensors
  of the residual width in the residual dtype, q/k/v and the attention output, 4 x the MLP
  width for a gated MLP / 2 x for a plain one, in the compute dtype; autocast adds the
  16-bit casts of the norms' outputs, ``AUTOCAST_CASTS``), plus the final norm. Attention is
  taken as a fused kernel (SDPA/flash: no T x T term). With gradient checkpointing: each
  layer's input plus one layer's activations, recomputed in the backward.

The peak is the persistent part (weights, optimizer state, reference) plus the largest of
the phases: sampling (KV cache), the forward/backward of the largest micro-batch (logits,
activations; gradients too when they outlive a backward pass: gradient accumulation, PPO's
micro-batches, DeepSpeed's partitions; otherwise the backward makes them as it frees the
activations), the optimizer step (gradients, AdamW's temporary). Not counted: the
CUDA context and kernels (about 0.5-1 GiB), the allocator's fragmentation, DeepSpeed's
communication buckets, data and tokenizer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from reft.config import (
    EvalConfig,
    PPOConfig,
    RerankerConfig,
    SampleConfig,
    SelfTrainConfig,
    SFTConfig,
)
from reft.errors import UserError
from reft.pipeline.dims import ModelDims, model_dims

ENGINES = ("single", "ddp", "zero2", "zero3")
"""single: one process; ddp: N replicas; zero2: gradients, AdamW sharded over N; zero3: + weights."""
DEVICES = ("cuda", "cpu")
DEFAULT_PROMPT_TOKENS = 256
"""Longest prompt assumed for the KV cache and PPO's sequences, in tokens (an assumption,
``--prompt-tokens``; the release's RL scripts allow prompts of up to 300)."""
SFT_LOGIT_BYTES = 12
"""Per (B, T, V) element in ``training.nll.token_nll``: the fp32 logits (or their fp32 copy),
the contiguous copy ``reshape`` makes of the shifted slice and the log-softmax output; in the
backward the log-softmax output, the NLL's gradient and its own: three 4-byte tensors."""
LAYER_STREAM = 6
"""Residual-width tensors a decoder layer saves (fp32 compute): its input, each norm's
normalised input and output (2 x 2), the residual after attention. Checked against the
tensors autograd saves (``saved_tensors_hooks``) in ``benchmarks/estimate.py``."""
AUTOCAST_CASTS = 5
"""Under 16-bit autocast with an fp32 residual the norms' outputs are not kept in fp32 but as
one 16-bit cast per reading linear: q, k, v and gate, up (fc1 counts once)."""
ADAM_TEMP_BYTES = 4
"""torch's foreach AdamW (on a GPU) makes one fp32 temporary per trainable param in its step."""
@dataclass(frozen=True)
class Target:
    """Where the stage runs: engine, processes, device, longest prompt."""

    engine: str = "single"
    processes: int = 1
    device: str = "cuda"
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UserError(f"--engine: choose one of {', '.join(ENGINES)}; got {self.engine!r}")
        if self.device not in DEVICES:
            raise UserError(f"--device: choose cuda or cpu; got {self.device!r}")
        if self.processes < 1 or (self.engine == "single" and self.processes != 1):
            raise UserError(f"--processes: {self.processes} with --engine {self.engine} "
                            "(single is 1 process; ddp/zero2/zero3 take N >= 1)")
        if self.prompt_tokens < 1:
            raise UserError(f"--prompt-tokens must be positive, got {self.prompt_tokens}")

    @property
    def zero(self) -> bool:
        return self.engine in ("zero2", "zero3")


@dataclass(frozen=True)
class Estimate:
    """Bytes per process at the stage's peak (``total``), with its parts. The KV cache and
    the update's gradients/logits/activations belong to different phases: ``total`` adds
    the persistent parts to the largest phase (``phase``), not every part."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    reference: int = 0
    kv_cache: int = 0
    logits: int = 0
    activations: int = 0
    total: int = 0
    phase: str = ""
    notes: tuple[str, ...] = ()

    PARTS = ("weights", "gradients", "optimizer", "reference", "kv_cache", "logits", "activations")


def dtype_bytes(dtype: str, device: str) -> int:
    """Bytes per element of ``--dtype`` (auto: bf16 on a GPU, fp32 on CPU)."""
    if dtype == "auto":
        return 2 if device == "cuda" else 4
    return 4 if dtype == "float32" else 2


def compute_bytes(mixed_precision: str, device: str) -> int:
    """Bytes per element of activations under ``--mixed-precision`` (auto: bf16 on a GPU)."""
    if mixed_precision == "auto":
        return 2 if device == "cuda" else 4
    return 4 if mixed_precision == "no" else 2


def layer_bytes(d: ModelDims, c: int, r: int) -> int:
    """Bytes one decoder layer saves for backward per token: compute bytes ``c``, residual
    stream bytes ``r`` (fp32 masters keep it fp32 under autocast)."""
    qkvo = 2 * d.heads * d.head_dim + 2 * d.kv_heads * d.head_dim
    mlp = (4 if d.gated else 2) * d.intermediate
    if c == r:
        return LAYER_STREAM * d.hidden * r + (qkvo + mlp) * c
    return (LAYER_STREAM - 2) * d.hidden * r + (AUTOCAST_CASTS * d.hidden + qkvo + mlp) * c


def activation_bytes(d: ModelDims, tokens: int, c: int, r: int, checkpointing: bool) -> int:
    """Saved activations of a forward over ``tokens`` tokens (rows x padded length), the
    final norm's two residual-width tensors included."""
    layer = layer_bytes(d, c, r)
    per_token = (d.hidden * r + layer) if checkpointing else d.layers * layer
    if checkpointing:
        per_token += (d.layers - 1) * d.hidden * r  # every other layer's input
    return tokens * (per_token + 2 * d.hidden * r)


@dataclass(frozen=True)
class _State:
    """A trained model's persistent bytes, and the precisions of its forward."""

    weights: int
    gradients: int
    optimizer: int
    step_temp: int
    c: int
    """compute bytes"""
    r: int
    """residual-stream bytes"""


def train_state(d: ModelDims, cfg: Any, t: Target, extra_trainable: int = 0) -> _State:
    """Weights, gradients and optimizer state of the trained model(s)."""
    lora = cfg.lora_r > 0
    trainable = (d.lora_params(cfg.lora_r) if lora else d.n_params) + extra_trainable
    n = t.processes
    if t.zero:  # the engine's bf16 module, its bf16 gradients and fp32 master + moments
        weights = 2 * d.n_params // (n if t.engine == "zero3" else 1)
        return _State(weights, 2 * trainable // n, 12 * trainable // n, 0, 2, 2)
    c = compute_bytes(cfg.mixed_precision, t.device)
    base = dtype_bytes(cfg.dtype, t.device)
    if lora:
        weights = d.n_params * base + 4 * d.lora_params(cfg.lora_r)
    else:
        weights = 4 * d.n_params + (2 * (d.n_params - d.head_params) if c == 2 else 0)
    temp = ADAM_TEMP_BYTES * trainable if t.device == "cuda" else 0
    return _State(weights, 4 * trainable, 8 * trainable, temp, c, base if lora else 4)


def sampling_bytes(d: ModelDims, rows: int, prompt: int, new: int, c: int) -> int:
    """KV cache for ``rows`` rows of ``prompt`` + ``new`` positions, the sampler's per-step
    (rows x vocab) logits, probabilities and noise, and one layer's prefill activations."""
    kv = rows * (prompt + new) * d.layers * 2 * d.kv_heads * d.head_dim * c
    step = rows * d.vocab * (c + 8)
    prefill = rows * prompt * (4 * d.hidden + 3 * d.intermediate) * c
    return kv + step + prefill


def _finish(persistent: dict[str, int], phases: dict[str, dict[str, int]], notes=()) -> Estimate:
    """``persistent`` parts plus the largest phase; every part reported (a phase's
    ``step_temp``, AdamW's temporary, counts in its total only)."""
    best = max(phases, key=lambda k: sum(phases[k].values()))
    parts = dict(persistent)
    for phase in phases.values():
        for k, v in phase.items():
            if k in Estimate.PARTS:
                parts[k] = max(parts.get(k, 0), v)
    total = sum(persistent.values()) + sum(phases[best].values())
    temp = phases[best].get("step_temp", 0)
    if temp:
        notes = (*notes, f"peak at the optimizer step, with AdamW's {gib(temp)} GiB temporary")
    return Estimate(**parts, total=total, phase=best, notes=tuple(notes))


def estimate(config: Any, stage: Any, target: Target | None = None,
             sample: SampleConfig | None = None) -> Estimate:
    """Peak bytes per process of ``stage`` (an SFT/PPO/SelfTrain/Reranker/Eval/Sample
    config) for the model ``config``; ``sample``: the reranker's sampling settings."""
    d, t = model_dims(config), target or Target()
    if isinstance(stage, PPOConfig):
        return _ppo(d, stage, t)
    if isinstance(stage, SelfTrainConfig):
        return _selftrain(d, stage, t)
    if isinstance(stage, RerankerConfig):
        trained = _supervised(d, stage, t, logits=False)
        return _larger(trained, _inference(d, sample, t) if sample else None)
    if isinstance(stage, SFTConfig):
        return _supervised(d, stage, t)
    if isinstance(stage, EvalConfig | SampleConfig):
        return _inference(d, stage, t)
    raise UserError(f"no memory estimate for {type(stage).__name__}")


def _supervised(d: ModelDims, cfg: Any, t: Target, logits: bool = True,
                sampling: int = 0, accumulates: bool = False) -> Estimate:
    """SFT (and the reranker, whose classifier has no LM head: ``logits=False``). The
    gradients count in the forward's peak only when they outlive a backward pass (gradient
    accumulation, ``accumulates``, or a DeepSpeed engine's partitions): otherwise they
    are made as the backward frees the activations, and the step is its own phase."""
    if not logits:
        d = dataclasses.replace(d, n_params=d.n_params - d.head_params, vocab=0)
    s = train_state(d, cfg, t)
    tokens = cfg.batch_size * cfg.max_length
    update = {"logits": tokens * d.vocab * SFT_LOGIT_BYTES,
              "activations": activation_bytes(d, tokens, s.c, s.r, cfg.gradient_checkpointing)}
    if accumulates or getattr(cfg, "grad_accum", 1) > 1 or t.zero:
        update["gradients"] = s.gradients
    phases = {"update": update, "step": {"gradients": s.gradients, "step_temp": s.step_temp}}
    if sampling:
        phases["sampling"] = {"kv_cache": sampling}
    return _finish({"weights": s.weights, "optimizer": s.optimizer}, phases)


def _ppo(d: ModelDims, cfg: PPOConfig, t: Target) -> Estimate:
    separate = cfg.critic == "separate" and cfg.estimator == "gae"
    extra = 0
    if separate:  # a trainable fp32 copy of the warm-up (its LM head frozen)
        extra = d.lora_params(cfg.lora_r) if cfg.lora_r else d.n_params - d.head_params
    s = train_state(d, cfg, t, extra)
    # the critic copy is fp32 (``ActorCritic``), bf16 inside a DeepSpeed engine
    weights = s.weights + ((2 if t.zero else 4) * d.n_params if separate else 0)
    ref = 0 if cfg.lora_r else d.n_params * dtype_bytes(cfg.dtype, t.device)
    ref //= t.processes if t.engine == "zero3" else 1
    prompt, new = t.prompt_tokens, cfg.sampling.max_new_tokens
    rows = cfg.rollout_batch_size * cfg.samples_per_question
    kv = sampling_bytes(d, min(cfg.sampling.gen_batch_size, rows), prompt, new, s.c)
    if getattr(cfg, "sampler_logprobs", False):  # every row's kept log-probs and hidden states
        kv += rows * new * (4 + d.hidden * s.c)
    mb = ppo_micro_rows(cfg, t, prompt + new)
    acts = activation_bytes(d, mb * (prompt + new), s.c, s.r, cfg.gradient_checkpointing)
    # + one row's fp32 working copies (the entropy's softmax and product, SFT_LOGIT_BYTES)
    logits = mb * new * d.vocab * (4 + 2 * s.c) + new * d.vocab * SFT_LOGIT_BYTES
    update = {"logits": logits, "activations": acts * (2 if separate else 1)}
    if mb < cfg.mini_batch_size or t.zero:  # gradients accumulate over micro-batches
        update["gradients"] = s.gradients
    phases = {"sampling": {"kv_cache": kv}, "update": update,
              "step": {"gradients": s.gradients, "step_temp": s.step_temp}}
    notes = [f"update micro-batch: {mb} sequences of {prompt}+{new} tokens"]
    return _finish({"weights": weights, "optimizer": s.optimizer, "reference": ref}, phases, notes)


def ppo_micro_rows(cfg: PPOConfig, t: Target, length: int) -> int:
    """Rows of the update's largest forward: ``--micro-batch-tokens`` of ``length``-token
    rows, at least one, at most the mini-batch (the whole mini-batch under DeepSpeed or 0)."""
    budget = getattr(cfg, "micro_batch_tokens", 0)
    if t.zero or not budget:
        return cfg.mini_batch_size
    return max(1, min(cfg.mini_batch_size, budget // length))


def _selftrain(d: ModelDims, cfg: SelfTrainConfig, t: Target) -> Estimate:
    """Offline: sampling with an inference copy, freed before the SFT; online: sampling with
    the policy and NLL updates, as PPO without a reference."""
    new = cfg.sampling.max_new_tokens
    if cfg.mode == "offline":
        infer = _inference(d, SampleConfig(dtype=cfg.dtype, k=cfg.k, sampling=cfg.sampling), t)
        return _larger(_supervised(d, cfg, t), infer)
    s = train_state(d, cfg, t)
    rows = min(cfg.sampling.gen_batch_size, cfg.rollout_batch_size * cfg.samples_per_question)
    chunks = cfg.rollout_batch_size * (cfg.samples_per_question + cfg.include_gold) > cfg.batch_size
    return _supervised(d, cfg, t, sampling=sampling_bytes(d, rows, t.prompt_tokens, new, s.c),
                       accumulates=chunks)


def _inference(d: ModelDims, cfg: Any, t: Target) -> Estimate:
    """A model in ``--dtype`` sampling ``gen_batch_size`` rows (eval, ``reft sample``)."""
    b = dtype_bytes(cfg.dtype, t.device)
    kv = sampling_bytes(d, cfg.sampling.gen_batch_size, t.prompt_tokens, cfg.sampling.max_new_tokens, b)
    return _finish({"weights": d.n_params * b}, {"sampling": {"kv_cache": kv}})


def _larger(train: Estimate, infer: Estimate | None) -> Estimate:
    """The larger of sampling (its own inference copy) and training, run one after the other."""
    if infer is None:
        return train
    if train.total >= infer.total:
        return dataclasses.replace(train, notes=(*train.notes, f"sampling first: {gib(infer.total)} GiB"))
    return dataclasses.replace(infer, notes=(*infer.notes, f"training after: {gib(train.total)} GiB"))


def gib(n: int) -> str:
    """GiB with one decimal ("<0.1" for a small non-zero amount)."""
    return "<0.1" if 0 < n < 0.05 * 2**30 else f"{n / 2**30:.1f}"
