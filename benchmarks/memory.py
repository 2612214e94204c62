"""Peak memory of LoRA against full fine-tuning, SFT and PPO, on the same model (CPU).

Each configuration runs in a fresh Python process (``--child``), so one run's peak does
not hide another's: the process imports torch/transformers/reft, records its peak
resident set size (RSS) so far as the baseline, runs a few training steps through
reft's own ``train_sft`` / ``train_ppo``, and reports its peak RSS (with glibc's mmap
threshold fixed, see ``MMAP_THRESHOLD``). "train MiB" is peak
minus baseline: weights, gradients, optimizer state, PPO's reference model and
activations. The analytic column counts fp32 bytes of weights + gradients + AdamW's two
moments for the trainable parameters, + the reference copy (full-FT PPO only).

Model: a ``reft model init`` Llama, hidden 512, 8 layers (about 26M parameters). SFT runs
at batch 16, where activations are the larger part, and at batch 2, where weights and
optimizer state are. LoRA: rank 8 on every linear layer (peft ``target_modules="all-linear"``).

    .venv/bin/python benchmarks/memory.py            # SFT and PPO, full / LoRA / +checkpointing
    .venv/bin/python benchmarks/memory.py --quick    # a smaller model
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reft.config import SamplingConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402

LORA_R = 8
MMAP_THRESHOLD = 64 * 1024
"""glibc serves allocations above this size with mmap and unmaps them when freed. Its default
threshold grows with the first large frees, after which freed tensors stay in the heap and
still count as resident: peak RSS then measures the allocator more than the tensors (a LoRA
run measured 300 MiB above full fine-tuning that way). Fixed, RSS follows live memory."""
RUNS = [  # (stage, name, overrides, per-process batch: SFT examples / PPO questions per step)
    ("sft", "full", {}, 16),
    ("sft", "full + grad ckpt", {"gradient_checkpointing": True}, 16),
    ("sft", "LoRA", {"lora_r": LORA_R}, 16),
    ("sft", "LoRA + grad ckpt", {"lora_r": LORA_R, "gradient_checkpointing": True}, 16),
    ("sft", "full", {}, 2),  # small batches: weights and optimizer state dominate
    ("sft", "LoRA", {"lora_r": LORA_R}, 2),
    ("ppo", "full", {}, 16),
    ("ppo", "LoRA", {"lora_r": LORA_R}, 16),
]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(spec: dict) -> None:
    """One training run in this process; prints one JSON line."""
    import accelerate  # noqa: F401  (everything a run imports, in the baseline)
    import peft  # noqa: F401
    import torch
    from torch.utils import tensorboard  # noqa: F401
    from transformers import LlamaForCausalLM  # noqa: F401

    from reft.config import PPOConfig, SFTConfig
    from reft.training import ppo, sft

    torch.set_num_threads(spec["threads"])
    examples = common.questions(spec["n"], split="train")
    base = peak_mib()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        kw = dict(model=spec["model"], out=out, mixed_precision="no", log_every=1000, **spec["overrides"])
        # OMP_NUM_THREADS (set by main) makes reft's setup_threads keep the count above
        if spec["stage"] == "sft":
            sft.train_sft(SFTConfig(epochs=1, batch_size=spec["batch"], max_length=256, **kw), examples)
        else:
            ppo.train_ppo(PPOConfig(rollout_batch_size=spec["batch"], mini_batch_size=spec["batch"] // 2,
                                    max_steps=spec["steps"], save_every=1000,
                                    **kw, sampling=SamplingConfig(max_new_tokens=64)), examples)
    print(json.dumps({"base": base, "peak": peak_mib(), "wall_s": time.perf_counter() - t0}))


def counts(model_dir: Path, lora_r: int) -> tuple[int, int]:
    """(trainable, total) parameters of the policy as reft builds it."""
    from reft.config import SFTConfig
    from reft.training.policy import load_policy

    class _Acc:
        device = "cpu"

    lm, _ = load_policy(SFTConfig(model=str(model_dir), lora_r=lora_r), _Acc())
    trainable = sum(p.numel() for p in lm.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in lm.parameters())


def model_dir(hidden: int, layers: int) -> Path:
    from reft.models.tiny import init_model

    out = common.CACHE / f"memory-h{hidden}-l{layers}"
    if not (out / "config.json").exists():
        init_model(out, hidden_size=hidden, layers=layers, heads=8)
    return out


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--child", help=argparse_suppress())
    a = p.parse_args()
    if a.child:
        return child(json.loads(a.child))
    common.setup(a.threads)
    hidden, layers, steps = (256, 4, 2) if a.quick else (512, 8, 2)
    mdir = model_dir(hidden, layers)
    rows = []
    for stage, name, overrides, batch in RUNS:
        batch = max(2, batch // 2) if a.quick else batch
        spec = dict(stage=stage, model=str(mdir), overrides=overrides, n=4 * batch, batch=batch,
                    steps=steps, threads=a.threads)
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1",
               "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        trainable, total = counts(mdir, overrides.get("lora_r", 0))
        analytic = 4 * (total + 3 * trainable + (total if stage == "ppo" and not overrides.get("lora_r") else 0))
        rows.append([stage.upper(), name, str(batch), f"{trainable / 1e6:.2f}M / {total / 1e6:.2f}M",
                     f"{got['peak']:.0f}", f"{got['peak'] - got['base']:.0f}", f"{analytic / 2**20:.0f}",
                     f"{got['wall_s']:.0f}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(f"{common.machine()}; model hidden {hidden}, {layers} layers, fp32; SFT: 4 steps, max "
          f"length 256; PPO: {steps} steps, mini-batch = half the rollout, 64 new tokens")
    print(common.table(["stage", "run", "batch", "trainable / total params", "peak RSS MiB",
                        "train MiB", "analytic MiB", "wall s"], rows))


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
