"""One frozen dataclass per stage. The CLI flags and YAML keys are built from these.

Defaults are the ReFT paper's (Luong et al., 2024, Appendix A) for real models;
``None`` means "auto": a derived property picks the paper's value, or a value
suited to the tiny from-scratch model that ``reft model init`` builds.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_TEMPLATE = "Question:\n{question}\nAnswer reasoning:\n"


@dataclass(frozen=True)
class DataArgs:
    """Where the data comes from and how it is read (shared by every stage)."""

    cot: str = "nl"
    """Chain-of-thought style: nl (text ending 'Therefore, the answer is: X') or python (a program)."""
    task: str = "numeric"
    """Answer type: numeric (compare numbers with tolerance 1e-2) or mc (multiple-choice letter a-e)."""
    data_format: str = "auto"
    """How to read data files: auto, gsm8k (original JSON lines), reft (ReFT JSON array), hf (any datasets source)."""
    columns: str = ""
    """Column mapping for hf sources, e.g. 'question=problem,answer=solution,cot=rationale'."""
    hf_split: str = "train"
    """Split to read from a Hugging Face dataset name."""
    template: str = PROMPT_TEMPLATE
    """Prompt template; must contain {question}."""
    max_examples: int = 0
    """Use only the first N examples (0 = all)."""
    seed: int = 0
    """Random seed (data order, sampling, initialisation)."""
    dtype: str = "auto"
    """Model weights dtype: auto (fp32 on CPU, bf16 on GPU when supported), float32, bfloat16, float16."""

    CHOICES = {
        "cot": ("nl", "python"),
        "task": ("numeric", "mc"),
        "data_format": ("auto", "gsm8k", "reft", "hf"),
        "dtype": ("auto", "float32", "bfloat16", "float16"),
    }


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
    mixed_precision: str = "auto"
    """Accelerate mixed precision: auto (bf16 on a GPU that supports it, else no), no, bf16, fp16."""

    CHOICES = {**DataArgs.CHOICES, "mixed_precision": ("auto", "no", "bf16", "fp16")}


@dataclass(frozen=True)
class SFTConfig(TrainArgs):
    """Stage 1: supervised warm-up on (question, CoT) pairs, loss on CoT tokens only."""

    model: str = ""
    """Model to train: a Hugging Face hub id or a local directory."""
    train_file: str = ""
    """Training data: a file (.json/.jsonl/.parquet/.csv) or a Hugging Face dataset name."""
    out: str = "runs/sft"
    """Run directory (config, metrics.jsonl, TensorBoard events, checkpoints, final/)."""
    epochs: int = 2
    """Number of epochs (the paper warms up for 1-2 for ReFT, trains SFT baselines longer)."""
    batch_size: int = 16
    """Examples per optimizer step per process."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    warmup_ratio: float = 0.1
    """Fraction of steps with linear warm-up, then linear decay."""
    max_length: int = 512
    """Truncate prompt+CoT to this many tokens."""

    @property
    def tiny_lr(self) -> float:
        """Learning rate used for a reft-built tiny model when --lr is not given."""
        return 2e-3


@dataclass(frozen=True)
class GenArgs:
    """Sampling settings."""

    max_new_tokens: int = 256
    """Longest completion in tokens."""
    temperature: float = 1.0
    """Sampling temperature (ReFT samples at 1.0, no top-k/top-p)."""
    batch_size: int = 64
    """Prompts per generation batch."""
    timeout_s: float = 3.0
    """Time limit for each model-written program (cot=python)."""


@dataclass(frozen=True)
class EvalConfig(GenArgs, DataArgs):
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


@dataclass(frozen=True)
class PPOConfig(GenArgs, TrainArgs):
    """Stage 2: ReFT, PPO with answer rewards from a warm-up checkpoint."""

    model: str = ""
    """Warm-up checkpoint (policy init; the frozen reference is a copy of it)."""
    train_file: str = ""
    """Training questions with gold answers."""
    test_file: str = ""
    """Held-out data for periodic top-1 evaluation (optional)."""
    out: str = "runs/ppo"
    """Run directory."""
    epochs: int = 1
    """Passes over the training questions."""
    max_steps: int = 0
    """Stop after this many RL steps (0 = run all epochs)."""
    rollout_batch_size: int = 32
    """Questions per RL step per process."""
    samples_per_question: int = 1
    """Completions sampled per question (grpo/rloo need > 1)."""
    mini_batch_size: int = 16
    """Sequences per PPO mini-batch."""
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
    save_every: int = 50
    """Write a checkpoint every N steps."""
    kl_warn: float = 20.0
    """Warn in the log when the mean per-sequence KL exceeds this."""

    CHOICES = {
        **TrainArgs.CHOICES,
        "estimator": ("gae", "grpo", "rloo"),
        "critic": ("shared", "separate"),
        "kl_mode": ("reward", "loss"),
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
class SampleConfig(GenArgs, DataArgs):
    """Sample k completions per question to JSON lines (resumable)."""

    model: str = ""
    """Model: hub id or local directory."""
    data_file: str = ""
    """Questions with gold answers."""
    out: str = "samples.jsonl"
    """Output JSON-lines file; an existing one is continued, not overwritten."""
    k: int = 4
    """Samples per question."""


@dataclass(frozen=True)
class SelfTrainConfig(SFTConfig):
    """Self-training baselines: offline (sample once, filter, SFT on the union) or online."""

    max_new_tokens: int = 256
    """Longest sampled completion in tokens."""
    temperature: float = 1.0
    """Sampling temperature."""
    gen_batch_size: int = 64
    """Sequences per generation batch."""
    timeout_s: float = 3.0
    """Time limit for each model-written program (cot=python)."""
    mode: str = "offline"
    """offline: sample k CoTs per question from --model, keep correct distinct ones, SFT on data + them.
    online: the RL loop's sampling, but the update is the NLL of correct samples (+ the gold CoT)."""
    k: int = 4
    """Offline: samples per training question."""
    max_per_question: int = 4
    """Offline: at most this many distinct correct samples kept per question."""
    samples_per_question: int = 1
    """Online: samples per question per step."""
    rollout_batch_size: int = 32
    """Online: questions per step per process."""
    max_steps: int = 0
    """Online: stop after this many steps (0 = run all epochs)."""
    include_gold: bool = True
    """Online: add the annotated CoT of each question to the update."""
    out: str = "runs/selftrain"
    """Run directory."""

    CHOICES = {**SFTConfig.CHOICES, "mode": ("offline", "online")}


@dataclass(frozen=True)
class RerankerConfig(TrainArgs):
    """Reward model for reranking: a sequence classifier scoring P(correct | question, CoT)."""

    model: str = ""
    """Initial checkpoint (e.g. the SFT or ReFT model directory)."""
    samples: str = ""
    """Sampled solutions with correctness labels: the JSON lines written by 'reft sample'."""
    out: str = "runs/reranker"
    """Run directory; the classifier is saved to OUT/final."""
    epochs: int = 2
    """Epochs over the labelled samples."""
    batch_size: int = 16
    """Samples per optimizer step."""
    max_length: int = 512
    """Truncate prompt+completion to this many tokens."""
    warmup_ratio: float = 0.1
    """Fraction of steps with linear warm-up."""

    @property
    def tiny_lr(self) -> float:
        """Learning rate for a reft-built tiny model when --lr is not given."""
        return 1e-3
