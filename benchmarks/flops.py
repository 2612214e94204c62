"""Hardware ceiling and model-FLOPs utilisation (MFU).

1. Peak: the best of square ``torch.mm`` sizes in fp32 and bf16 (bf16 runs on AMX/AVX512-BF16
   where the CPU has them), with the benchmark's thread count.
2. MFU of reft's SFT step and of reft's RL step phases, from a short run of each:
   training counts 6 * N * tokens, sampling 2 * N * tokens, a no-grad forward 2 * N * tokens
   (N = parameters in matmuls, the input embedding excluded; attention's own FLOPs are left
   out, the usual approximation; tokens are real, non-pad tokens).

    .venv/bin/python benchmarks/flops.py
    .venv/bin/python benchmarks/flops.py --quick
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402


def matmul_flops(n: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP/s of an n x n x n matmul, best of runs filling ``seconds``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def peak(sizes: tuple[int, ...], quick: bool) -> tuple[list[list[object]], dict[tuple[str, int], float]]:
    """Rows (threads, dtype, n, GFLOP/s) and the best FLOP/s per (dtype, threads)."""
    rows, best = [], {}
    before = torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.bfloat16):
            name = str(dtype).removeprefix("torch.")
            for n in sizes:
                try:
                    f = matmul_flops(n, dtype, 0.3 if quick else 1.5)
                except RuntimeError as e:  # a build without the kernel
                    rows.append([threads, name, n, f"unavailable ({e})"])
                    continue
                rows.append([threads, name, n, f / 1e9])
                best[name, threads] = max(best.get((name, threads), 0.0), f)
    torch.set_num_threads(before)
    return rows, best


def main() -> int:
    from benchmarks import rl_step, sft

    p = common.parser(__doc__)
    args = p.parse_args()
    common.setup(args.threads)
    sizes = (256, 512) if args.quick else (128, 256, 512, 1024, 2048)
    rows, best = peak(sizes, args.quick)
    fp32 = best["float32", args.threads]
    body = common.table(["threads", "dtype", "n", "GFLOP/s (best of runs)"], rows)
    body += "\n\nPeak (best size): " + ", ".join(
        f"{dt} {t} thread{'s' if t > 1 else ''}: {f / 1e9:.0f} GFLOP/s" for (dt, t), f in best.items())

    model_dir = common.init_dir()
    model, _ = common.load(model_dir)
    n = common.n_params(model)
    del model
    mfu = []
    n_ex = sft.BATCH * (5 if args.quick else 20)
    for name, run in (("reft sft step", sft.run_reft), ("TRL SFTTrainer step", sft.run_trl)):
        tps = run(model_dir, common.questions(n_ex)).rate()[0]
        mfu.append([name, "6N", tps, 6 * n * tps / 1e9, 6 * n * tps / fp32])

    q, k, max_len, steps = (2, 2, 16, 2) if args.quick else (8, 4, 128, 4)
    warm = common.warm_dir()
    c = rl_step.run_reft(warm, common.questions(64), q=q, k=k, max_len=max_len, steps=steps)
    gen_tok = common.median(c.tokens)
    sample_s = common.median([d[rl_step.SAMPLING] for d in c.phases])
    update_s = common.median([d[rl_step.UPDATE] for d in c.phases])
    seq_tok = common.median(c.seq_tokens)  # prompt + completion: what the update runs on
    mfu.append(["reft ppo sampling", "2N", gen_tok / sample_s, 2 * n * gen_tok / sample_s / 1e9,
                2 * n * gen_tok / sample_s / fp32])
    mfu.append(["reft ppo update (grpo)", "6N", seq_tok / update_s, 6 * n * seq_tok / update_s / 1e9,
                6 * n * seq_tok / update_s / fp32])
    step_s = common.median(c.steps)
    # one step: sampling (2N per completion token) + old and ref forwards (2 x 2N) + update (6N)
    step_flops = 2 * n * gen_tok + 4 * n * seq_tok + 6 * n * seq_tok
    mfu.append(["reft ppo whole step (grpo)", "2N gen + 10N seq", seq_tok / step_s,
                step_flops / step_s / 1e9, step_flops / step_s / fp32])
    bf16 = best.get(("bfloat16", args.threads))
    mfu = [r + [r[3] * 1e9 / bf16 if bf16 else "-"] for r in mfu]
    body += (f"\n\nN = {n / 1e6:.2f}M matmul parameters (model `{model_dir.name}`); MFU against the "
             f"best fp32 matmul at {args.threads} thread(s), {fp32 / 1e9:.0f} GFLOP/s.\n\n"
             + common.table(["work", "FLOPs/token", "tokens/s", "GFLOP/s", "MFU (fp32 peak)",
                                "vs bf16 peak"], mfu))
    common.report("Hardware ceiling and MFU", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
