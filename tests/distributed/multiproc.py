"""Starting reft under ``accelerate launch`` with 2 CPU processes (gloo), as CI does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CPU_2PROC = ROOT / "configs" / "accelerate" / "multi_cpu_2proc.yaml"
RUN_COMMANDS = Path(__file__).with_name("run_commands.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*target: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file multi_cpu_2proc.yaml TARGET`` (e.g. ``-m reft sft ...``),
    one intra-op thread per process (the machine may be shared)."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC),
           "--main_process_port", str(free_port()), *map(str, target)]
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # a hang: SIGTERM, on which torchrun stops its workers (they run in sessions of
            # their own, so killing the launcher alone would leave them waiting for ever)
            proc.terminate()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def launch_commands(commands: list[list[object]], cwd: Path, timeout: float = 300):
    """Several reft commands in one 2-process launch."""
    argv = json.dumps([[str(a) for a in c] for c in commands])
    return launch(str(RUN_COMMANDS), argv, cwd=cwd, timeout=timeout)
