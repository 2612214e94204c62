"""Tune the demo's budgets on a validation split (never the test set), by hand.

    .venv/bin/python benchmarks/demo_tuning.py --out /tmp/tune --n-train 1500 \
        --warmup-epochs 8 --epochs 3 --sft-lrs 1e-4,3e-4,1e-3 --ppo-lrs 3e-5,1e-4,3e-4

Validation problems are train-split problems after the first ``n_train`` (so disjoint
from the training questions, and from the test split by construction). Prints one line
per run: method, lr, validation top-1, wall seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reft.config import SamplingConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/tune")
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--warmup-epochs", type=int, default=8)
    ap.add_argument("--warmup-lr", type=float, default=3e-3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--sft-lrs", default="3e-4")
    ap.add_argument("--ppo-lrs", default="1e-4")
    ap.add_argument("--ppo-extra", default="{}", help="JSON of extra PPOConfig fields")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from reft.config import EvalConfig, PPOConfig, SFTConfig
    from reft.data.synthetic import generate
    from reft.eval.runner import evaluate
    from reft.models.loading import load_model, load_tokenizer
    from reft.models.tiny import init_model
    from reft.training.ppo import train_ppo
    from reft.training.sft import train_sft

    out = Path(a.out)
    allx = generate(a.n_train + a.n_val, a.seed, "train")
    train, val = allx[: a.n_train], allx[a.n_train :]
    settings = EvalConfig(sampling=SamplingConfig(max_new_tokens=a.max_new_tokens, gen_batch_size=300))

    def score(model_dir: Path) -> float:
        s, _ = evaluate(load_model(model_dir), load_tokenizer(model_dir), val, settings, progress=False)
        return s["top1"]

    def report(name: str, lr: float, d: Path, t0: float) -> None:
        row = {"run": name, "lr": lr, "val_top1": score(d), "wall_s": round(time.perf_counter() - t0)}
        print(json.dumps(row), flush=True)

    model = out / "model"
    if not model.exists():
        texts = [e.question + "\n" + e.cot for e in train]
        init_model(model, texts=texts, hidden_size=a.hidden, layers=a.layers, seed=a.seed)
    warm = out / "warmup" / "final"
    if not warm.exists():
        t0 = time.perf_counter()
        train_sft(SFTConfig(model=str(model), out=str(out / "warmup"), epochs=a.warmup_epochs,
                            lr=a.warmup_lr, batch_size=32, log_every=20, seed=a.seed), train)
        report("warmup", a.warmup_lr, warm, t0)
    for lr in map(float, a.sft_lrs.split(",")):
        t0 = time.perf_counter()
        d = train_sft(SFTConfig(model=str(warm), out=str(out / f"sft_{lr:g}"), epochs=a.epochs, lr=lr,
                                batch_size=32, warmup_ratio=0.0, log_every=20, seed=a.seed), train)
        report("sft", lr, d, t0)
    extra = json.loads(a.ppo_extra)
    for lr in map(float, a.ppo_lrs.split(",")):
        t0 = time.perf_counter()
        tag = "_".join(f"{k}{v}" for k, v in extra.items())
        d = train_ppo(PPOConfig(model=str(warm), out=str(out / f"ppo_{lr:g}{tag}"), epochs=a.epochs, lr=lr,
                                rollout_batch_size=32, mini_batch_size=16, save_every=10_000, log_every=5, seed=a.seed, **extra, sampling=SamplingConfig(max_new_tokens=a.max_new_tokens)), train)
        report("reft", lr, d, t0)


if __name__ == "__main__":
    main()
