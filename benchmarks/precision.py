"""fp32 against bf16 autocast (fp32 master weights either way): SFT and PPO step time and
peak memory on this CPU, for the ``small`` preset (and ``tiny`` with ``--preset tiny``).

Each (stage, precision) runs in a process of its own, so its peak RSS is its own (reported
above the RSS of the process with its libraries imported, before the run); the
precisions alternate, ``--repeats`` times. SFT: ``--steps`` optimizer steps of batch 16
(median step time after the first, tokens/s, final loss). PPO: ``--steps`` RL steps from
the same warm model, 8 questions x 1 sample, up to 128 new tokens (median rollout and
update times, the sampled reward). Both sides train from the same weights on the same
batches, so their final losses say whether bf16 costs accuracy.

    .venv/bin/python benchmarks/precision.py                  # small preset, 3 repeats
    .venv/bin/python benchmarks/precision.py --preset tiny --repeats 1 --steps 4
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from reft.config import SamplingConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

PRECISIONS = ("no", "bf16")


def child(stage: str, precision: str, preset: str, steps: int) -> dict:
    """One run in this process; returns its measurements."""
    common.setup()
    import reft.training.ppo as ppo
    import reft.training.sft as sft
    from reft.config import PPOConfig, SFTConfig

    common.hold_threads(sft)
    common.hold_threads(ppo)
    out = Path(tempfile.mkdtemp(prefix=f"prec-{stage}-{precision}-"))
    base_gib = _rss_gib()  # libraries loaded: the run's own memory is the peak above this
    if stage == "sft":
        cfg = SFTConfig(model=str(common.init_dir(preset)), out=str(out), epochs=1, batch_size=16,
                        max_length=256, log_every=1, mixed_precision=precision, lr=1e-3)
        sft.train_sft(cfg, common.questions(steps * 16, split="train"))
    else:
        cfg = PPOConfig(model=str(common.warm_dir(preset)), out=str(out), rollout_batch_size=8,
                        mini_batch_size=8, ppo_epochs=1, max_steps=steps, log_every=1, save_every=10**9, mixed_precision=precision, lr=1e-5, sampling=SamplingConfig(max_new_tokens=128))
        ppo.train_ppo(cfg, common.questions(steps * 8, split="train"))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - base_gib
    if stage == "sft":
        rate = statistics.median(r["perf/tokens_per_s"] for r in rows[1:])
        return {"tokens_per_s": rate, "loss": rows[-1]["loss/nll"], "peak_gib": peak_gib}
    rows = [r for r in rows if "time/update_s" in r][1:]
    rollout = ("time/sample_s", "time/score_s", "time/forward_s", "time/advantages_s")
    return {"rollout_s": statistics.median(sum(r[k] for k in rollout) for r in rows),
            "update_s": statistics.median(r["time/update_s"] for r in rows),
            "reward": statistics.mean(r["reward/mean"] for r in rows), "peak_gib": peak_gib}


def _rss_gib() -> float:
    """Resident memory now, after importing what a run imports (torch, transformers, peft)."""
    import accelerate  # noqa: F401
    import transformers  # noqa: F401

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**30


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--preset", default="small", choices=("tiny", "small"))
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--child", nargs=2, metavar=("STAGE", "PRECISION"), help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        common.setup(args.threads)  # the child's thread count: the parent's --threads
        print("RESULT " + json.dumps(child(*args.child, args.preset, args.steps)))
        return
    common.setup(args.threads)
    common.warm_dir(args.preset)  # cached before timing
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(1 if args.quick else args.repeats):
        for stage in ("sft", "ppo"):
            for precision in PRECISIONS:
                cmd = [sys.executable, __file__, "--child", stage, precision, "--preset", args.preset,
                       "--steps", str(args.steps), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                line = next(x for x in out.splitlines() if x.startswith("RESULT "))
                results.setdefault((stage, precision), []).append(json.loads(line[7:]))
    rows = []
    for (stage, precision), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        if stage == "sft":
            what = f"{med['tokens_per_s']:.0f} tokens/s; final loss {med['loss']:.3f}"
        else:
            what = (f"rollout {med['rollout_s']:.2f} s + update {med['update_s']:.2f} s; "
                    f"mean reward {med['reward']:.3f}")
        rows.append((stage, precision, what, f"{med['peak_gib']:.2f}", len(runs)))
    body = common.table(("stage", "mixed precision", "median step", "peak RSS above libraries, GiB", "runs"), rows)
    common.report(f"precision ({args.preset} preset, {args.steps} steps)", body)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
