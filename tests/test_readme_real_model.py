"""The README's "Using a real model" commands run as shown (issue 22), with what this machine
lacks stood in for: the ReFT release's files come from a local HTTP server on 127.0.0.1
serving the real copies in ../shared/data, the hub model's config from a seeded offline
cache (the dry run), and the hub model itself is replaced by the session's tiny model.
Each training or evaluation command gets a few flags that shorten it (``SHORTEN``); the
full pipeline line is covered by tests/test_pipeline.py on the CI config instead. Slow tier.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from reft.data import fetch
from tests.test_dry_run import seed_hub

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SERVED = {  # release path -> its copy in ../shared/data
    "data/svamp_nl.json": "svamp/svamp_nl.json",
    "data/svamp_test_set.json": "svamp/svamp_test_set.json",
}
HUB_MODELS = ("codellama/CodeLlama-7b-hf", "facebook/galactica-125m")
SHORTEN = {  # command -> flags appended so that it ends in seconds on a CPU
    "sft": ["--max-steps", "2", "--max-length", "128"],
    "ppo": ["--max-steps", "1", "--max-new-tokens", "16", "--rollout-batch-size", "4",
            "--mini-batch-size", "4", "--eval-examples", "4"],
    "eval": ["--max-examples", "8", "--max-new-tokens", "16"],
}


def readme_commands() -> list[str]:
    """The ``reft ...`` lines of the first bash block of the README's real-model section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Using a real model", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line.startswith("reft ")]


@pytest.fixture
def release_server(file_server):
    """The release's files, from ../shared/data, at the URL root ``reft.data.fetch`` reads."""
    for path, copy in SERVED.items():
        file_server.routes[f"/mwp_ReFT/{fetch.RELEASE_COMMIT}/{path}"] = (SHARED / copy, {})
    return f"{file_server.url}/mwp_ReFT"


def test_the_readme_names_data_and_configs_that_exist():
    commands = readme_commands()
    assert any(c.startswith("reft data get") for c in commands)
    for c in commands:
        for word in shlex.split(c):
            if word.startswith("configs/"):
                assert (ROOT / word).is_file(), word
            if word.startswith("reft:"):
                assert word in fetch.NAMES, word


@pytest.mark.slow
def test_readme_real_model_commands_run(tmp_path, release_server, tiny_model_dir, python):
    hf_home = seed_hub(tmp_path / "hf")
    env = {**os.environ, "HF_HOME": str(hf_home), fetch.ENDPOINT_ENV: release_server,
           "TOKENIZERS_PARALLELISM": "false"}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE"):
        env.pop(name, None)
    ran = []
    for line in readme_commands():
        args = shlex.split(line)[1:]
        if args[0] == "pipeline" and "--dry-run" not in args:
            continue  # a whole 7B protocol; tests/test_pipeline.py runs the CI config
        run_env = {**env, "HF_HUB_OFFLINE": "1"} if "--dry-run" in args else env
        args = [str(ROOT / a) if a.startswith("configs/") else a for a in args]
        args = [str(tiny_model_dir) if a in HUB_MODELS else a for a in args]
        args += SHORTEN.get(args[0], [])
        proc = subprocess.run([python, "-m", "reft", *args], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
        ran.append(args[0])
    assert ran == ["pipeline", "data", "sft", "ppo", "eval"]
    assert (tmp_path / "runs" / "reft" / "final" / "config.json").is_file()
    assert (tmp_path / "runs" / "eval" / "eval.json").is_file()
    cached = list((hf_home / "reft" / "data").rglob("*.json"))
    assert sorted(p.name for p in cached) == ["svamp_nl.json", "svamp_test_set.json"]
