"""Choose the demo's learning rates on a validation split, as ``reft demo`` runs them.

    .venv/bin/python benchmarks/demo_tuning.py --out /tmp/tune              # the default demo
    .venv/bin/python benchmarks/demo_tuning.py --out /tmp/tune --seed 1 --sft-lrs 3e-4 --reft-lrs 3e-5

Everything but the learning rates is the demo's plan (``reft.demo.plan_for``: level, CoT
style, model, warm-up, epochs, batch sizes, sampling), resolved by the same pipeline spec.
The validation problems are held out from the training split (``generate_validation``: drawn
after the training problems, none with a training problem's family and numbers); the test
split is never read. One warm-up, then continued SFT at each ``--sft-lrs`` and ReFT at each
``--reft-lrs`` from it; each is scored on validation (greedy top-1, vote@k with the demo's
k), one JSON line per run, and the best learning rate of each method by top-1 is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/tmp/tune")
    ap.add_argument("--plan", default="full", choices=["full", "quick"])
    ap.add_argument("--cot", default="python", choices=["python", "nl"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-val", type=int, default=300)
    ap.add_argument("--sft-lrs", default="1e-4,3e-4,1e-3")
    ap.add_argument("--reft-lrs", default="1e-5,3e-5,1e-4")
    a = ap.parse_args()

    from reft.data.prompts import build_prompt, build_target
    from reft.data.synthetic import generate, generate_validation
    from reft.demo import pipeline_spec, plan_for
    from reft.eval.runner import evaluate
    from reft.models.loading import load_model, load_tokenizer
    from reft.models.tiny import init_model
    from reft.pipeline import parse_pipeline
    from reft.runtime.dist import setup_threads
    from reft.training.ppo import train_ppo
    from reft.training.sft import train_sft

    setup_threads()
    out = Path(a.out)
    plan = plan_for(a.plan, a.cot)
    train = generate(plan["n_train"], a.seed, "train", a.cot, plan["level"])
    val = generate_validation(a.n_val, plan["n_train"], a.seed, a.cot, plan["level"])
    p = parse_pipeline(pipeline_spec(plan, out, a.seed, a.cot), "demo tuning", str(out))
    ev = dataclasses.replace(p.configs["eval"], rerank="")
    results: dict[str, list[dict]] = {"sft": [], "reft": []}

    def report(name: str, lr: float, model_dir: Path, t0: float) -> None:
        s, _ = evaluate(load_model(model_dir), load_tokenizer(model_dir), val, ev, k=ev.k,
                        progress=False, seed=a.seed)
        row = {"run": name, "lr": lr, "val_top1": round(100 * s["top1"], 1),
               "val_vote@k": round(100 * s["vote@k"], 1), "k": ev.k,
               "wall_s": round(time.perf_counter() - t0)}
        results.setdefault(name, []).append(row)
        print(json.dumps(row), flush=True)

    model = out / "model" / "final"
    if not model.exists():  # as the pipeline's tiny-model stage builds it
        texts = [build_prompt(e.question, cot=a.cot) + build_target(e, cot=a.cot) for e in train]
        sizes = {k: v for k, v in dataclasses.asdict(p.model).items() if k != "init"}
        init_model(model, preset=p.model.init, texts=texts, seed=a.seed, **sizes)
    t0 = time.perf_counter()
    warm = train_sft(p.configs["warmup"], train)
    report("warmup", p.configs["warmup"].lr, warm, t0)
    for lr in map(float, a.sft_lrs.split(",")):
        t0 = time.perf_counter()
        cfg = dataclasses.replace(p.configs["sft"], lr=lr, out=str(out / f"sft_{lr:g}"))
        report("sft", lr, train_sft(cfg, train), t0)
    for lr in map(float, a.reft_lrs.split(",")):
        t0 = time.perf_counter()
        cfg = dataclasses.replace(p.configs["reft"], lr=lr, out=str(out / f"reft_{lr:g}"), eval_every=0)
        report("reft", lr, train_ppo(cfg, train, []), t0)
    for name in ("sft", "reft"):
        best = max(results[name], key=lambda r: r["val_top1"])
        print(f"best {name} lr by validation top-1: {best['lr']:g} ({best['val_top1']})")


if __name__ == "__main__":
    main()
