"""``benchmarks/gpu_check.py`` on CPU: the same script a GPU session runs, at smoke size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--preset", "tiny",
         "--steps", "3", "--batch-size", "4", "--max-new-tokens", "24", "--eval-questions", "4",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gpu_check: OK" in proc.stdout
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["failures"] == []
    assert [s["stage"] for s in summary["stages"]] == ["sft", "ppo", "eval"]
    sft, ppo, ev = summary["stages"]
    assert sft["steps"] == 3 and ppo["steps"] == 3 and ev["steps"] == 4
    assert sft["weights_moved"] > 0.5 and ppo["weights_moved"] > 0.5
    assert sft["loss_last"] < sft["loss_first"]
    assert summary["mixed_precision"] == "bf16"  # the GPU setting, run by bf16 autocast on CPU
    assert all(s["peak_gib"] > 0 and s["tokens_per_s"] > 0 for s in summary["stages"])
