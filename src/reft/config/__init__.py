"""One frozen dataclass per stage. The CLI flags and YAML keys are built from these.

Defaults are the ReFT paper's (Luong et al., 2024, Appendix A) for real models;
``None`` means "auto": a derived property picks the paper's value, or a value
suited to the tiny from-scratch model that ``reft model init`` builds. Settings groups
(``SamplingConfig``) are nested where they are needed; their fields are flags of their own.
Every config checks its values when made (``reft.config.checks``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reft.algorithms.registry import ADVANTAGE_ESTIMATORS, LOSS_AGG_MODES
from reft.answers import COTS, PARSERS, TASKS
from reft.config.checks import (
    COUNT,
    COUNT0,
    FRACTION,
    MIN_LENGTH,
    NON_NEGATIVE,
    POSITIVE,
    TOKEN_ID,
    Checked,
    ConfigError,
    Range,
    flag,
    validate,
)

PROMPT_TEMPLATE = "Question:\n{question}\nAnswer reasoning:\n"

__all__ = ["PROMPT_TEMPLATE", "Checked", "ConfigError", "DataArgs", "EvalConfig", "PPOConfig", "Range",
           "RerankerConfig", "SFTConfig", "SampleConfig", "SamplingConfig", "SelfTrainConfig",
           "SourceArgs", "SupervisedArgs", "TrainArgs", "flag", "validate"]


@dataclass(frozen=True)
class SourceArgs(Checked):
    """How a data source is read (every stage, and the pipeline's ``data:`` section)."""

    data_format: str = "auto"
    """How to read data files: auto, gsm8k (original JSON lines), reft (ReFT JSON array), hf (any datasets source)."""
    columns: str = ""
    """Column mapping for hf sources, e.g. 'question=problem,answer=solution,cot=rationale'."""
    hf_split: str = "train"
    """Split to read from a Hugging Face dataset name."""

    CHOICES = {"data_format": ("auto", "gsm8k", "reft", "hf")}


@dataclass(frozen=True)
class DataArgs(SourceArgs):
    """Where the data comes from and how it is read (shared by every stage)."""

    cot: str = "nl"
    """Chain-of-thought style: nl (text ending 'Therefore, the answer is: X') or python (a program)."""
    task: str = "numeric"
    """Answer type: numeric (compare numbers with tolerance 1e-2) or mc (multiple-choice letter a-e)."""
    answer_parser: str = "default"
    """How answers are read, by the reward and every eval metric alike: default (the ReFT release's rule, float() of the text after the last 'Therefore, the answer is: ' line, plus its data's '<203>.' form), release (exactly the release's rule) or lenient (also '$18', '1,000', '18 dollars'). See docs/answers.md."""
    template: str = PROMPT_TEMPLATE
    """Prompt template; must contain {question}."""
    max_examples: int = 0
    """Use only the first N examples (0 = all)."""
    seed: int = 0
    """Random seed (data order, sampling, initialisation)."""
    dtype: str = "auto"
    """Weights dtype for inference and frozen copies (reference model, LoRA base): auto (bf16 on a GPU with native bf16, else fp32), float32, bfloat16, float16. Trained weights are always fp32."""
    eos_token_id: int | None = None
    """Token id that ends a target and stops sampling (unset: the tokenizer's eos, else the one the model's config.json/generation_config.json names). Needed when neither names one; the ReFT release sets 2 for every model (</s> of CodeLlama and Galactica)."""
    pad_token_id: int | None = None
    """Token id batches are padded with (unset: the tokenizer's pad, else the model config's, else the eos; masks never depend on it). The ReFT release sets 1."""

    CHOICES = {
        "cot": COTS,
        "task": TASKS,
        "answer_parser": tuple(PARSERS),
        "dtype": ("auto", "float32", "bfloat16", "float16"),
    }
    BOUNDS = {
        "max_examples": COUNT0,
        "seed": NON_NEGATIVE,
        "eos_token_id": TOKEN_ID,
        "pad_token_id": TOKEN_ID,
    }
    CONTAINS = {"template": "{question}"}


@dataclass(frozen=True)
class TrainArgs(DataArgs):
    """Settings shared by every training loop."""

    lr: float | None = None
    """Peak learning rate (None = auto: the paper's value for real models, a higher one for a reft-built tiny model)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    log_every: int = 10
    """Log metrics every N optimizer steps."""
    resume: bool = False
    """Continue from the last checkpoint in --out."""
    lora_r: int = 0
    """LoRA rank through peft (0 = full fine-tuning)."""
    lora_alpha: int = 16
    """LoRA alpha."""
    lora_dropout: float = 0.0
    """LoRA dropout."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = run all epochs)."""
    save_every: int = 50
    """Write a resumable checkpoint every N optimizer steps (epoch loops also save at every epoch end)."""
    save_total_limit: int = 2
    """Keep only the newest N checkpoints of the run, deleting older ones once a new one is complete (0 = keep all)."""
    resume_changed: bool = False
    """With --resume: accept settings that differ from the checkpoint's (the run records them), instead of refusing."""
    max_bad_steps: int = 3
    """Stop after this many consecutive steps whose gradients are not finite (each such step is skipped)."""
    report_to: str = "tensorboard"
    """Where metrics go besides metrics.jsonl: tensorboard (RUN/tb), wandb (the optional extra reft[wandb]; WANDB_MODE=offline works) or none."""
    mixed_precision: str = "auto"
    """Compute precision (autocast; weights stay fp32 masters): auto (bf16 on a GPU with native bf16, else no), no, bf16 (GPU or CPU), fp16 (GPU)."""

    CHOICES = {"mixed_precision": ("auto", "no", "bf16", "fp16"),
               "report_to": ("tensorboard", "wandb", "none")}
    BOUNDS = {
        "lr": POSITIVE,
        "max_grad_norm": Range(0, open_low=True, inf_ok=True),
        "weight_decay": NON_NEGATIVE,
        "log_every": COUNT,
        "lora_r": Range(0, why="0 = full fine-tuning"),
        "lora_alpha": COUNT,
        "lora_dropout": Range(0, 1, open_high=True),
        "max_steps": COUNT0,
        "save_every": COUNT,
        "save_total_limit": COUNT0,
        "max_bad_steps": COUNT,
    }


@dataclass(frozen=True)
class SupervisedArgs(TrainArgs):
    """What the two supervised loops (SFT and the reranker) share."""

    model: str = ""
    """Model to train: a Hugging Face hub id or a local directory (for the reranker, e.g. the SFT or ReFT model)."""
    epochs: int = 2
    """Number of epochs (the paper warms up for 1-2 for ReFT, trains SFT baselines longer)."""
    batch_size: int = 16
    """Examples per optimizer step per process."""
    warmup_ratio: float = 0.1
    """Fraction of steps with linear warm-up, then linear decay."""
    max_length: int = 512
    """Truncate prompt+CoT to this many tokens."""

    BOUNDS = {
        "epochs": COUNT,
        "batch_size": COUNT,
        "warmup_ratio": FRACTION,
        "max_length": MIN_LENGTH,
    }


@dataclass(frozen=True)
class SFTConfig(SupervisedArgs):
    """Stage 1: supervised warm-up on (question, CoT) pairs, loss on CoT tokens only."""

    train_file: str = ""
    """Training data: a file (.json/.jsonl/.parquet/.csv), a data set name (reft:gsm8k_nl, docs/data.md) or a Hugging Face dataset name."""
    out: str = "runs/sft"
    """Run directory (config, metrics.jsonl, TensorBoard events, checkpoints, final/)."""
    grad_accum: int = 1
    """Gradient accumulation steps."""

    BOUNDS = {"grad_accum": COUNT}

    @property
    def tiny_lr(self) -> float:
        """Learning rate used for a reft-built tiny model when --lr is not given."""
        return 2e-3


@dataclass(frozen=True)
class SamplingConfig(Checked):
    """How completions are drawn and scored: one group, nested as ``sampling`` in every config
    that samples (its fields are flags and YAML keys of their own: ``--max-new-tokens``;
    ``sampling: {max_new_tokens: 256}`` in YAML works too)."""

    max_new_tokens: int = 256
    """Longest completion in tokens."""
    temperature: float = 1.0
    """Sampling temperature (ReFT samples at 1.0, no top-k/top-p)."""
    gen_batch_size: int = 64
    """Sequences per generation batch."""
    timeout_s: float = 3.0
    """Wall-clock limit in seconds for each model-written program (cot=python); one that runs past it answers nothing. The release allows 10 s (2 s in its later small-model RL script); reft keeps 3 s: the 3043 SVAMP programs take at most 16 ms in the sandbox and sympy solves about 55 ms, while a program that never ends holds a worker, and so the whole scoring step, for the full limit (docs/answers.md)."""

    BOUNDS = {
        "max_new_tokens": COUNT,
        "temperature": Range(0, why="0 = greedy"),
        "gen_batch_size": COUNT,
        "timeout_s": POSITIVE,
    }


@dataclass(frozen=True)
class EvalConfig(DataArgs):
    """Evaluation: greedy top-1, and with --k, sampled vote@k and pass@k (and rerank@k)."""

    model: str = ""
    """Model to evaluate: hub id or local directory."""
    test_file: str = ""
    """Test data: file or Hugging Face dataset name."""
    out: str = "runs/eval"
    """Output directory for eval.json and predictions.jsonl."""
    k: int = 0
    """Samples per question for vote@k / pass@k / rerank@k (0 = greedy top-1 only)."""
    rerank: str = ""
    """Reward-model directory (from 'reft reranker train') for rerank@k."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How completions are drawn and scored (--max-new-tokens, --temperature, --gen-batch-size, --timeout-s)."""

    BOUNDS = {"k": Range(0, why="0 = greedy top-1 only")}


@dataclass(frozen=True)
class PPOConfig(TrainArgs):
    """Stage 2: ReFT, PPO with answer rewards from a warm-up checkpoint."""

    model: str = ""
    """Warm-up checkpoint (policy init; the frozen reference is a copy of it)."""
    train_file: str = ""
    """Training questions with gold answers."""
    val_file: str = ""
    """Validation questions for the periodic greedy top-1 (--eval-every; optional). Not the test set: that is read once, by the final reft eval."""
    out: str = "runs/ppo"
    """Run directory."""
    epochs: int = 1
    """Passes over the training questions."""
    rollout_batch_size: int = 32
    """Questions per RL step per process."""
    samples_per_question: int = 1
    """Completions sampled per question (grpo/rloo need > 1)."""
    mini_batch_size: int = 16
    """Sequences per PPO mini-batch (one optimizer step each)."""
    micro_batch_tokens: int = 8192
    """Most tokens (rows x padded length; real tokens with --pack) in one forward: the rollout's old-policy and reference forwards and the update's gradient-accumulation micro-batches are cut to it (0 = one forward per mini-batch / rollout)."""
    pack: bool = False
    """Run PPO's forwards on packed rows (no padding; sequences kept apart by position ids): pays with flash attention, not with sdpa/eager, whose block mask costs the square of the packed length."""
    sampler_logprobs: bool = False
    """Take the old policy's log-probs (and the shared head's values) from the sampler's decode steps instead of a second forward over the rollout (exact in fp32; under bf16 the first PPO ratio is then not exactly 1)."""
    ppo_epochs: int = 2
    """Passes over each rollout batch."""
    estimator: str = "gae"
    """Advantage estimator: gae (value head, the paper), grpo or rloo (value-free)."""
    critic: str = "shared"
    """Value model: shared (linear head on the policy, the paper) or separate (a copy of the warm-up)."""
    kl_coef: float | None = None
    """KL penalty beta (None = 0.05 for nl, 0.01 for python, as in the paper)."""
    kl_mode: str = "reward"
    """Where the KL penalty goes: reward (per token, the paper) or loss."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""
    clip_eps: float = 0.2
    """PPO policy ratio clip."""
    value_clip: float = 0.2
    """Value-function clip range."""
    vf_coef: float = 5.0
    """Value loss coefficient."""
    loss_agg: str = "seq-mean-token-mean"
    """How token losses become one: seq-mean-token-mean (mean per response, then over responses; the release), token-mean or seq-mean-token-sum."""
    value_lr: float | None = None
    """Learning rate of the value head or separate critic (unset: --lr, as in the paper)."""
    whiten_advantages: bool = True
    """Whiten advantages over the (global) batch."""
    partial_reward: float = 0.1
    """Reward for an extracted but wrong answer (ReFT's 0.1; 0 turns it off)."""
    eval_every: int = 0
    """Evaluate greedy top-1 on --test-file every N steps (0 = only at the end)."""
    eval_examples: int = 200
    """Test questions used by periodic evaluation (0 = all)."""
    kl_warn: float = 20.0
    """Warn in the log when the mean per-sequence KL exceeds this."""
    kl_stop: float = 100.0
    """Stop the run (exit status 1) when the mean per-sequence KL exceeds this: the policy has diverged from the reference (0 = never)."""
    entropy_stop: float = 1e-3
    """Stop the run (exit status 1) when the policy's mean token entropy falls below this: it has collapsed to one output (0 = never)."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How completions are drawn and scored (--max-new-tokens, --temperature, --gen-batch-size, --timeout-s)."""

    CHOICES = {
        "estimator": ADVANTAGE_ESTIMATORS.keys(),
        "critic": ("shared", "separate"),
        "kl_mode": ("reward", "loss"),
        "loss_agg": LOSS_AGG_MODES,
    }
    BOUNDS = {
        "sampling.temperature": Range(0, open_low=True, why="log-probabilities are taken at it"),
        "epochs": COUNT,
        "rollout_batch_size": COUNT,
        "samples_per_question": COUNT,
        "mini_batch_size": COUNT,
        "micro_batch_tokens": NON_NEGATIVE,
        "ppo_epochs": COUNT,
        "kl_coef": NON_NEGATIVE,
        "gamma": FRACTION, "lam": FRACTION,
        "clip_eps": POSITIVE, "value_clip": POSITIVE,
        "vf_coef": NON_NEGATIVE,
        "value_lr": POSITIVE,
        "partial_reward": FRACTION,
        "eval_every": COUNT0,
        "eval_examples": COUNT0,
        "kl_warn": Range(0, inf_ok=True),
        "kl_stop": Range(0, inf_ok=True, why="0 = never"),
        "entropy_stop": Range(0, why="0 = never"),
    }

    @property
    def beta(self) -> float:
        """KL coefficient in force."""
        if self.kl_coef is not None:
            return self.kl_coef
        return 0.05 if self.cot == "nl" else 0.01

    @property
    def tiny_lr(self) -> float:
        """Learning rate used for a reft-built tiny model when --lr is not given."""
        return 2e-5


@dataclass(frozen=True)
class SampleConfig(DataArgs):
    """Sample k completions per question to JSON lines (resumable)."""

    model: str = ""
    """Model: hub id or local directory."""
    data_file: str = ""
    """Questions with gold answers."""
    out: str = "samples.jsonl"
    """Output JSON-lines file; an existing one is continued, not overwritten."""
    k: int = 4
    """Samples per question."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How completions are drawn and scored (--max-new-tokens, --temperature, --gen-batch-size, --timeout-s)."""

    BOUNDS = {"k": COUNT}


@dataclass(frozen=True)
class SelfTrainConfig(SFTConfig):
    """Self-training baselines: offline (sample once, filter, SFT on the union) or online."""

    mode: str = "offline"
    """offline: sample k CoTs per question from --model, keep at most --max-per-question correct distinct ones, then continue SFT from --model on the data + them (--epochs, --lr as SFT). The release (train_sl_model.py, exps/paper_exps/OffSL) samples 100 per question from the warm-up model and keeps at most 10 (as the paper configs in configs/ do; the defaults are small for quick runs), but fine-tunes the base model (CodeLlama/Galactica), not the warm-up, for 20 epochs at lr 1e-5; to match it, sample into OUT/samples.jsonl with the warm-up and pass the base model as --model. online (the release's train_rl_sl.py): each step samples --samples-per-question CoTs per question with the current policy and takes --updates-per-batch optimizer steps on 1/2 NLL(correct samples) + 1/2 NLL(gold CoTs), each a token mean over the global batch; default lr 3e-7 for real models (the release's), as ReFT."""
    k: int = 4
    """Offline: samples per training question (the release: 100; the default is small for quick runs)."""
    max_per_question: int = 4
    """Offline: at most this many distinct correct samples kept per question (the release: 10, its self_learning_samples). reft drops a sample equal to the gold CoT (always trained on) before counting; the release counts it among the 10."""
    samples_per_question: int = 1
    """Online: samples per question per step (the release: 1)."""
    rollout_batch_size: int = 32
    """Online: questions per step per process (the release: 4 per GPU x 8 GPUs = 32 in all)."""
    updates_per_batch: int = 2
    """Online: optimizer steps on each sampled batch, the same samples and gold CoTs each time (the release: 2, its ppo_epochs)."""
    include_gold: bool = True
    """Online: add the annotated CoTs of the questions, as the release: the loss is 1/2 NLL(correct samples) + 1/2 NLL(gold). Without: the token-mean NLL of the correct samples alone (a step with none is skipped)."""
    out: str = "runs/selftrain"
    """Run directory."""
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    """How completions are drawn and scored (--max-new-tokens, --temperature, --gen-batch-size, --timeout-s)."""

    CHOICES = {"mode": ("offline", "online")}
    BOUNDS = {
        "k": COUNT,
        "max_per_question": COUNT,
        "samples_per_question": COUNT,
        "rollout_batch_size": COUNT,
        "updates_per_batch": COUNT,
    }


@dataclass(frozen=True)
class RerankerConfig(SupervisedArgs):
    """Reward model for reranking: a sequence classifier scoring P(correct | question, CoT)."""

    samples: str = ""
    """Sampled solutions with correctness labels: the JSON lines written by 'reft sample'."""
    out: str = "runs/reranker"
    """Run directory; the classifier is saved to OUT/final."""

    @property
    def tiny_lr(self) -> float:
        """Learning rate for a reft-built tiny model when --lr is not given."""
        return 1e-3
