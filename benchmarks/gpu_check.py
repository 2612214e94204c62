"""GPU check: SFT, PPO and eval of a ~100M-parameter model in bf16 autocast, fp32 masters.

One command, no network, no hub: builds a Llama from a config (``reft model init``'s
builder, tokenizer trained on the synthetic task), writes synthetic N-CoT data, then runs
reft's own SFT, PPO (GAE, shared value head, KL to the frozen reference) and eval a few
dozen steps each. It fails (exit 1) unless every stage's losses are finite and its
weights moved, and it prints, per stage, step time, tokens/s, peak memory and MFU
(training 6·N·tokens, sampling and no-grad forwards 2·N·tokens; N = matmul parameters).

    python benchmarks/gpu_check.py                          # on a GPU, ~100M params (<= 8 min)
    python benchmarks/gpu_check.py --device cpu --preset tiny --steps 2   # smoke test, CPU

Without installing reft: ``PYTHONPATH=src python benchmarks/gpu_check.py``. The JSON
summary goes to ``--out``/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from reft.config import SamplingConfig

PRESETS = {
    # ~101M parameters: 14 Llama layers of width 768 (MLP 2048), vocab <= 1024
    "100m": {"vocab_size": 1024, "hidden_size": 768, "layers": 14, "heads": 12, "max_positions": 512},
    "tiny": {"vocab_size": 512, "hidden_size": 64, "layers": 2, "heads": 4, "max_positions": 512},
}
# dense bf16 peak of the GPU, for MFU (per device name; --peak-tflops overrides)
PPO_PHASES = ("sample", "score", "forward", "advantages", "update")
"""The phases of a PPO step, as ``reft.training.ppo`` records them (``time/<phase>_s``)."""
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--preset", choices=sorted(PRESETS), default="100m")
    p.add_argument("--steps", type=int, default=30, help="SFT and PPO steps (default 30)")
    p.add_argument("--batch-size", type=int, default=16, help="SFT batch and PPO questions per step")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--eval-questions", type=int, default=64)
    p.add_argument("--mixed-precision", default="bf16", choices=("bf16", "no"))
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU")
    p.add_argument("--out", default=None, help="work directory (default: a temporary one)")
    return p.parse_args()


def main() -> int:
    args = parse()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --device cpu --preset tiny for the CPU smoke run)",
              file=sys.stderr)
        return 2
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # reft places models where Accelerate does
    work = Path(args.out or tempfile.mkdtemp(prefix="reft-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {describe_device(args.device)}; torch {torch.__version__}; work dir {work}")
    data = write_data(work, n_train=args.steps * args.batch_size, n_test=args.eval_questions)
    model_dir = build_model(work / "init", args.preset)
    n_params = matmul_params(model_dir)
    peak = args.peak_tflops or peak_tflops(args.device)
    rows, failures = [], []
    for stage in (run_sft, run_ppo, run_eval):
        row, problems = stage(args, work, data, model_dir)
        row["mfu"] = (row.pop("flops") / row["seconds"] / (peak * 1e12)) if peak else None
        rows.append(row)
        failures += [f"{row['stage']}: {p}" for p in problems]
        print(f"  {row['stage']} done in {row['seconds']:.1f} s")
    summary = {"device": describe_device(args.device), "torch": torch.__version__,
               "preset": args.preset, "params_matmul": n_params, "mixed_precision": args.mixed_precision,
               "peak_tflops": peak, "stages": rows, "failures": failures}
    (work / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(rows, n_params))
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("gpu_check: OK (losses finite, weights moved in every training stage)")
    return 0


def describe_device(device: str) -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB)"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def peak_tflops(device: str) -> float | None:
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def write_data(work: Path, n_train: int, n_test: int) -> dict[str, Path]:
    from reft.data.synthetic import generate, write_reft_json

    paths = {"train": work / "train.json", "test": work / "test.json"}
    write_reft_json(generate(n_train, seed=0, split="train", cot="nl"), paths["train"], cot="nl")
    write_reft_json(generate(n_test, seed=0, split="test", cot="nl"), paths["test"], cot="nl")
    return paths


def build_model(out: Path, preset: str) -> Path:
    from reft.models.tiny import init_model

    if not (out / "config.json").is_file():
        init_model(out, preset="small", **PRESETS[preset])
    return out


def matmul_params(model_dir: Path) -> int:
    """Parameters in matmuls: every weight but the input embedding and the norms."""
    from safetensors import safe_open

    n = 0
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            if len(shape) == 2 and "embed_tokens" not in key:
                n += math.prod(shape)
    return n


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def moved(before: Path, after: Path) -> tuple[float, str | None]:
    """Fraction of weights changed; a problem string when none moved or any is not finite."""
    a, b = weights(before), weights(after)
    changed = total = 0
    for k, w in a.items():
        v = b[k].float()
        if not torch.isfinite(v).all():
            return 0.0, f"non-finite weights in {k}"
        changed += int((v != w.float()).sum())
        total += w.numel()
    return changed / total, None if changed else "no weight moved"


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]


class Peak:
    """Peak memory of a stage: CUDA allocator peak, or the process's max RSS on CPU."""

    def __init__(self, device: str):
        self.cuda = device == "cuda"

    def __enter__(self) -> Peak:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        if self.cuda:
            self.gib = torch.cuda.max_memory_allocated() / 2**30
        else:
            self.gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_sft(args, work: Path, data: dict, model_dir: Path) -> tuple[dict, list[str]]:
    from reft.config import SFTConfig
    from reft.training.sft import train_sft

    out = work / "sft"
    cfg = SFTConfig(model=str(model_dir), train_file=str(data["train"]), out=str(out), cot="nl",
                    epochs=1, batch_size=args.batch_size, log_every=1, max_length=512,
                    mixed_precision=args.mixed_precision, warmup_ratio=0.1)
    with Peak(args.device) as p:
        final = train_sft(cfg)
    rows = metrics(out)
    losses = [r["loss/nll"] for r in rows]
    tok_s = [r["perf/tokens_per_s"] for r in rows[1:]] or [rows[0]["perf/tokens_per_s"]]
    tokens = sum(tok_s) / len(tok_s) * p.seconds
    frac, problem = moved(model_dir, final)
    problems = [problem] if problem else []
    if not all(map(math.isfinite, losses)):
        problems.append(f"non-finite loss in {losses}")
    if len(losses) > 2 and not losses[-1] < losses[0]:
        problems.append(f"loss did not fall ({losses[0]:.3f} -> {losses[-1]:.3f})")
    n = matmul_params(model_dir)
    return ({"stage": "sft", "steps": len(rows), "seconds": p.seconds, "step_s": p.seconds / len(rows),
             "tokens_per_s": sum(tok_s) / len(tok_s), "peak_gib": p.gib, "flops": 6 * n * tokens,
             "loss_first": losses[0], "loss_last": losses[-1], "weights_moved": frac}, problems)


def run_ppo(args, work: Path, data: dict, model_dir: Path) -> tuple[dict, list[str]]:
    from reft.config import PPOConfig
    from reft.training.ppo import train_ppo

    out, warm = work / "ppo", work / "sft" / "final"
    cfg = PPOConfig(model=str(warm), train_file=str(data["train"]), out=str(out), cot="nl",
                    rollout_batch_size=args.batch_size, mini_batch_size=max(1, args.batch_size // 2),
                    max_steps=args.steps, log_every=1,
                    save_every=10**9, mixed_precision=args.mixed_precision, sampling=SamplingConfig(max_new_tokens=args.max_new_tokens))
    with Peak(args.device) as p:
        final = train_ppo(cfg)
    rows = metrics(out)
    rows = [r for r in rows if "loss/policy" in r]
    frac, problem = moved(warm, final)
    problems = [problem] if problem else []
    for key in ("loss/policy", "loss/value", "policy/kl", "reward/mean"):
        if not all(math.isfinite(r[key]) for r in rows):
            problems.append(f"non-finite {key}")
    n = matmul_params(model_dir)
    # per step: sampling 2N per new token, two no-grad forwards (policy + reference) 2N each
    # per sequence token, ppo_epochs updates 6N per sequence token; lengths from the metrics
    resp = sum(r["response/length"] for r in rows) * args.batch_size
    prompt = 60 * args.batch_size * len(rows)  # synthetic prompts: ~60 tokens
    seq = resp + prompt
    flops = 2 * n * resp + 2 * 2 * n * seq + cfg.ppo_epochs * 6 * n * seq
    phases = {f"{k}_s": sum(r[f"time/{k}_s"] for r in rows) for k in PPO_PHASES}
    return ({"stage": "ppo", "steps": len(rows), "seconds": p.seconds, "step_s": p.seconds / len(rows),
             "tokens_per_s": resp / p.seconds, **phases,
             "peak_gib": p.gib, "flops": flops, "reward_first": rows[0]["reward/mean"],
             "reward_last": rows[-1]["reward/mean"], "kl_last": rows[-1]["policy/kl"],
             "weights_moved": frac}, problems)


def run_eval(args, work: Path, data: dict, model_dir: Path) -> tuple[dict, list[str]]:
    from reft.config import EvalConfig
    from reft.eval.runner import run_eval as evaluate

    out = work / "eval"
    cfg = EvalConfig(model=str(work / "ppo" / "final"), test_file=str(data["test"]), out=str(out),
                     cot="nl", k=4, sampling=SamplingConfig(max_new_tokens=args.max_new_tokens))
    with Peak(args.device) as p:
        summary = evaluate(cfg)
    from reft.models.loading import load_tokenizer

    tok = load_tokenizer(cfg.model)
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines() if x]
    texts = [r["completion"] for r in preds] + [s["completion"] for r in preds for s in r["samples"]]
    tokens = sum(len(ids) + 1 for ids in tok(texts, add_special_tokens=False)["input_ids"])
    n = matmul_params(model_dir)
    problems = [] if 0.0 <= summary["top1"] <= 100.0 else [f"top1 {summary['top1']}"]
    return ({"stage": "eval", "steps": len(preds), "seconds": p.seconds,
             "step_s": p.seconds / max(1, len(preds)), "tokens_per_s": tokens / p.seconds,
             "peak_gib": p.gib, "flops": 2 * n * tokens, "top1": summary["top1"]}, problems)


def table(rows: list[dict], n_params: int) -> str:
    head = f"\nmodel: {n_params / 1e6:.1f}M matmul parameters\n"
    lines = ["| stage | steps | wall s | s/step | tokens/s | peak GiB | MFU | notes |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        notes = _notes(r)
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['stage']} | {r['steps']} | {r['seconds']:.1f} | {r['step_s']:.3f} | "
                     f"{r['tokens_per_s']:.0f} | {r['peak_gib']:.2f} | {mfu} | {notes} |")
    ppo = [r for r in rows if r["stage"] == "ppo"]
    if ppo:
        r = ppo[0]
        total = sum(r[f"{k}_s"] for k in PPO_PHASES)
        lines += ["", "PPO step phases (seconds over the run, share of the step):", "",
                  "| " + " | ".join(PPO_PHASES) + " |", "|" + "---:|" * len(PPO_PHASES),
                  "| " + " | ".join(f"{r[f'{k}_s']:.1f} ({r[f'{k}_s'] / max(total, 1e-9):.0%})"
                                   for k in PPO_PHASES) + " |"]
    return head + "\n".join(lines)


def _notes(r: dict) -> str:
    if r["stage"] == "sft":
        return f"loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}, moved {r['weights_moved']:.1%}"
    if r["stage"] == "ppo":
        return (f"update {r['update_s']:.1f} s, reward "
                f"{r['reward_first']:.3f} -> {r['reward_last']:.3f}, KL {r['kl_last']:.4f}, "
                f"moved {r['weights_moved']:.1%}")
    return f"top-1 {r['top1']:.1f} (greedy + 4 samples per question)"


if __name__ == "__main__":
    sys.exit(main())
