"""One epoch of ``reft ppo`` on the demo's data: reft as it was (a git ref) against this tree.

The run is the demo's own ReFT stage: its ``reft/config.yaml`` (written by ``reft demo``)
from its warm-up checkpoint on its 2000 training problems, with one epoch, no periodic
evaluation and no test file, so that the time is PPO's alone. Each side is the CLI in a
fresh process (``python -m reft ppo --config ...``); "before" imports reft from a git
worktree of ``--ref``. Wall time is the whole command (loading included); completions/s
counts the epoch's sampled completions over the sum of the logged step times
(``time/*_s`` in ``metrics.jsonl``). The sides alternate, ``--repeats`` times.

    reft demo --out runs/demo                                # once: the demo's run
    .venv/bin/python benchmarks/reft_epoch.py --demo-run runs/demo
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.rl_step import DEFAULT_REF, REFT_PHASES, worktree  # noqa: E402


def run_side(src: Path, cfg: dict, extra: list[str], threads: int) -> dict:
    """One epoch through the CLI importing reft from ``src``: wall seconds, step seconds,
    completions."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump({**cfg, "out": str(Path(tmp) / "run")}))
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads),
               "HF_HUB_OFFLINE": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "reft", "ppo", "--config", str(path),
                               "--report-to", "none", *extra], env=env, capture_output=True,
                              text=True, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(proc.stderr[-3000:])
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").open()]
    steps = [r for r in rows if any(k in r for k in REFT_PHASES)]
    step_s = sum(sum(r.get(k, 0.0) for k in REFT_PHASES) for r in steps)
    n = len(steps) * cfg["rollout_batch_size"] * cfg.get("samples_per_question", 1)
    return {"wall": wall, "step_s": step_s, "completions": n, "steps": len(steps),
            "reward": steps[-1].get("reward/mean")}


def main() -> int:
    p = common.parser(__doc__)
    p.add_argument("--demo-run", default="runs/demo", help="a finished `reft demo` run directory")
    p.add_argument("--ref", default=DEFAULT_REF, help=f"the 'before' git ref (default {DEFAULT_REF})")
    a = p.parse_args()
    common.setup(a.threads)
    demo = Path(a.demo_run).resolve()
    from dataclasses import fields

    from reft.config import PPOConfig

    known = {f.name for f in fields(PPOConfig)}  # the file also records derived values (beta)
    cfg = {k: v for k, v in yaml.safe_load((demo / "reft" / "config.yaml").read_text()).items()
           if k in known}
    cfg.update(epochs=1, eval_every=0, test_file="", save_every=10**6, log_every=1, max_steps=0)
    sides = {f"before ({a.ref})": (worktree(a.ref), []), "now": (ROOT / "src", []),
             "now, --sampler-logprobs": (ROOT / "src", ["--sampler-logprobs"])}
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for _ in range(1 if a.quick else a.repeats):
        for name, (src, extra) in sides.items():
            got = run_side(src, cfg, extra + (["--max-steps", "2"] if a.quick else []), a.threads)
            results[name].append(got)
            print(name, json.dumps(got), flush=True)
    rows = []
    base = common.median([r["wall"] for r in results[f"before ({a.ref})"]])
    for name, runs in results.items():
        wall = common.median([r["wall"] for r in runs])
        rate = common.median([r["completions"] / r["step_s"] for r in runs])
        rows.append([name, len(runs), runs[0]["steps"], wall, common.spread([r["wall"] for r in runs]),
                     rate, base / wall, runs[-1]["reward"]])
    common.report("One ReFT epoch on the demo's data",
                  f"`{demo.name}`: {cfg['model']}, {cfg['rollout_batch_size']} questions/step, "
                  f"mini-batch {cfg['mini_batch_size']}, {cfg['ppo_epochs']} PPO epochs, up to "
                  f"{cfg['sampling']['max_new_tokens']} new tokens\n\n"
                  + common.table(["side", "runs", "steps", "wall s (median)", "range",
                                  "completions/s (steps)", "speed-up (wall)", "last reward"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
