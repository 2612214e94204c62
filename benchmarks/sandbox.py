"""Sandbox throughput: programs per second on the 3043 SVAMP P-CoT programs, and on the same
set with a share of hostile programs mixed in, with every protection layer on.

For context it also times the unsafe way the original ReFT code runs them: ``exec`` in a
reused process pool (no isolation at all). Besides wall-clock rates it reports CPU time per
program (trainer + executor + children), which machine load disturbs far less than the rate.

    .venv/bin/python benchmarks/sandbox.py                   # full run
    .venv/bin/python benchmarks/sandbox.py --quick           # smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from reft.sandbox import Sandbox  # noqa: E402

DATA = Path(os.environ.get("REFT_SHARED_DATA", ROOT.parent / "shared" / "data"))

HOSTILE = [  # a spread of what the corpus in tests/sandbox does, fast failures and slow ones
    "def solution():\n    while True:\n        pass\n",
    "import time\ndef solution():\n    time.sleep(100)\n",
    "def solution():\n    return len(bytearray(10**11))\n",
    "import os\ndef solution():\n    while True:\n        try:\n            os.fork()\n"
    "        except OSError:\n            pass\n",
    "import os\ndef solution():\n    os.kill(os.getppid(), 9)\n",
    "import ctypes\ndef solution():\n    return ctypes.string_at(0)\n",
    "import os\ndef solution():\n    return os.system('true')\n",
    "def solution():\n    return 10**5000\n",
    "def solution():\n    raise SystemExit\n",
    "def solution(:\n",
]


def _cpu_of(pid: int) -> float:
    """utime + stime of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _executor_cpu(pid: int) -> float:
    """An executor with its zygotes (which reap the programs' processes)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return _cpu_of(pid) + sum(_cpu_of(int(k)) for k in kids)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_sandbox(sandbox: Sandbox, programs: list[str], timeout_s: float) -> dict:
    pids = sandbox.executor_pids()
    cpu0 = sum(_executor_cpu(p) for p in pids) + _own_cpu()
    start = time.perf_counter()
    results = sandbox.run(programs, timeout_s=timeout_s)
    wall = time.perf_counter() - start
    cpu = sum(_executor_cpu(p) for p in pids) + _own_cpu() - cpu0
    assert sandbox.executor_pids() == pids, "an executor was replaced during the run"
    return {"rate": len(programs) / wall, "wall_s": wall, "cpu_ms": 1000 * cpu / len(programs),
            "ok": sum(r.ok for r in results)}


def _exec_one(source: str):
    """The unsafe baseline: ``exec`` in a pool worker, as the original ReFT code does."""
    namespace: dict = {}
    try:
        exec(source, namespace)
        return namespace["solution"]()
    except Exception:
        return None


def time_unsafe_pool(programs: list[str], workers: int) -> dict:
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pool.map(_exec_one, programs[:50])
        start = time.perf_counter()
        pool.map(_exec_one, programs, chunksize=16)
        wall = time.perf_counter() - start
    return {"rate": len(programs) / wall, "wall_s": wall}


def median_run(runs: list[dict]) -> dict:
    """The run with the median rate (the upper one of an even count), and all the rates."""
    middle = sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]
    return dict(middle, rates=[round(r["rate"], 1) for r in runs])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="500 programs, one repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="default: usable CPUs")
    p.add_argument("--hostile", type=float, default=0.05, help="share of hostile programs")
    p.add_argument("--timeout-s", type=float, default=1.0, help="per-program timeout in the mix")
    p.add_argument("--clean-only", action="store_true", help="skip the mix and the baseline")
    args = p.parse_args()
    rows = json.loads((DATA / "svamp" / "svamp_python_sdp.json").read_text())
    clean = [r["answer_cot"] for r in rows]
    repeats = 1 if args.quick else args.repeats
    if args.quick:
        clean = clean[:500]
    rng = random.Random(0)
    mix = list(clean)
    for i in rng.sample(range(len(mix)), int(args.hostile * len(mix))):
        mix[i] = HOSTILE[i % len(HOSTILE)]
    workers = args.workers or len(os.sched_getaffinity(0))
    report = {"programs": len(clean), "workers": workers, "cpus": os.cpu_count(),
              "load_before": os.getloadavg()[0]}
    with Sandbox(workers) as sandbox:
        report["protections"] = sandbox.protections
        sandbox.run(clean[:50])
        report["clean"] = median_run([time_sandbox(sandbox, clean, 3.0) for _ in range(repeats)])
    if args.clean_only:
        print(json.dumps(report, indent=1))
        return
    with Sandbox(workers) as sandbox:  # a fresh one: the mix kills executors when not root
        sandbox.run(clean[:50])
        runs = []
        for _ in range(repeats):
            before = sandbox.restarts
            runs.append(time_sandbox(sandbox, mix, args.timeout_s))
            runs[-1]["restarts"] = sandbox.restarts - before
        report["mix"] = median_run(runs)
    report["unsafe_pool"] = median_run([time_unsafe_pool(clean, workers) for _ in range(repeats)])
    report["load_after"] = os.getloadavg()[0]
    print(json.dumps(report, indent=1))
    print(f"\nclean: {report['clean']['rate']:.0f} programs/s ({report['clean']['cpu_ms']:.1f} "
          f"CPU-ms each); {args.hostile:.0%} hostile at {args.timeout_s:g} s timeout: "
          f"{report['mix']['rate']:.0f}/s; unsafe exec pool: {report['unsafe_pool']['rate']:.0f}/s")


if __name__ == "__main__":
    main()
