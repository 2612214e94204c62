"""Bad settings fail fast, through the real CLI: exit status 2, one line naming the flag.

Every case runs ``python -m reft ...`` in an empty directory with ``--model`` and the data
files pointing nowhere: the range check must come before any model, data or run directory
is touched, so the message names the bad flag (not the missing model) and ``--out`` is
never created.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

NOWHERE = ["--model", "/nonexistent/model"]
TRAIN = [*NOWHERE, "--train-file", "/nonexistent/train.json", "--out", "out"]
EVAL = [*NOWHERE, "--test-file", "/nonexistent/test.json", "--out", "out"]
SAMPLE = [*NOWHERE, "--data-file", "/nonexistent/test.json", "--out", "out"]
RERANK = [*NOWHERE, "--samples", "/nonexistent/samples.jsonl", "--out", "out"]

# (argv, text the message must contain); the command is argv[0]
CASES = [
    (["sft", "--batch-size", "0", *TRAIN], "--batch-size: must be an integer >= 1; got 0"),
    (["sft", "--lr", "-1", *TRAIN], "--lr: must be > 0; got -1.0"),
    (["sft", "--lr", "0", *TRAIN], "--lr: must be > 0; got 0.0"),
    (["sft", "--lr", "nan", *TRAIN], "--lr: must be > 0; got nan"),
    (["sft", "--epochs", "-1", *TRAIN], "--epochs: must be an integer >= 1; got -1"),
    (["sft", "--epochs", "0", *TRAIN], "--epochs: must be an integer >= 1; got 0"),
    (["sft", "--max-length", "8", *TRAIN], "--max-length: must be an integer >= 16"),
    (["sft", "--template", "no placeholder", *TRAIN],
     "--template: must contain {question}; got 'no placeholder'"),
    (["sft", "--warmup-ratio", "1.5", *TRAIN], "--warmup-ratio: must be between 0 and 1; got 1.5"),
    (["sft", "--log-every", "0", *TRAIN], "--log-every: must be an integer >= 1; got 0"),
    (["sft", "--lora-dropout", "1", *TRAIN], "--lora-dropout: must be >= 0 and < 1; got 1.0"),
    (["sft", "--grad-accum", "0", *TRAIN], "--grad-accum: must be an integer >= 1; got 0"),
    (["sft", "--seed", "-1", *TRAIN], "--seed: must be an integer >= 0; got -1"),
    (["ppo", "--mini-batch-size", "0", *TRAIN], "--mini-batch-size: must be an integer >= 1; got 0"),
    (["ppo", "--temperature", "-1", *TRAIN], "--temperature: must be > 0"),
    (["ppo", "--temperature", "0", *TRAIN], "--temperature: must be > 0"),
    (["ppo", "--gamma", "2", *TRAIN], "--gamma: must be between 0 and 1; got 2.0"),
    (["ppo", "--clip-eps", "0", *TRAIN], "--clip-eps: must be > 0; got 0.0"),
    (["ppo", "--save-every", "0", *TRAIN], "--save-every: must be an integer >= 1; got 0"),
    (["ppo", "--kl-coef", "-0.1", *TRAIN], "--kl-coef: must be >= 0; got -0.1"),
    (["ppo", "--value-lr", "0", *TRAIN], "--value-lr: must be > 0; got 0.0"),
    (["eval", "--k", "-3", *EVAL], "--k: must be an integer >= 0 (0 = greedy top-1 only); got -3"),
    (["eval", "--max-new-tokens", "0", *EVAL], "--max-new-tokens: must be an integer >= 1; got 0"),
    (["eval", "--temperature", "-0.5", *EVAL], "--temperature: must be >= 0 (0 = greedy); got -0.5"),
    (["sample", "--k", "0", *SAMPLE], "--k: must be an integer >= 1; got 0"),
    (["sample", "--timeout-s", "0", *SAMPLE], "--timeout-s: must be > 0; got 0.0"),
    (["selftrain", "--updates-per-batch", "0", *TRAIN],
     "--updates-per-batch: must be an integer >= 1; got 0"),
    (["selftrain", "--k", "0", *TRAIN], "--k: must be an integer >= 1; got 0"),
    (["reranker", "train", "--max-length", "8", *RERANK], "--max-length: must be an integer >= 16"),
]

# YAML files: (command + flags, file contents, text the message must contain)
YAML_CASES = [
    (["sft", *TRAIN], "batch_size: 0\n", "bad.yaml: --batch-size: must be an integer >= 1; got 0"),
    (["sft", *TRAIN], "batch-size: 0\n", "bad.yaml: --batch-size: must be an integer >= 1; got 0"),
    (["ppo", *TRAIN], "lam: -0.5\n", "bad.yaml: --lam: must be between 0 and 1; got -0.5"),
    (["eval", *EVAL], "template: 'Q: {q}'\n", "bad.yaml: --template: must contain {question}"),
    # a bad flag beside a good file: the flag is named, not the file
    (["sft", "--epochs", "0", *TRAIN], "lr: 0.001\n", "--epochs: must be an integer >= 1; got 0"),
]


def _run(argv: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reft", *argv], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _check(r: subprocess.CompletedProcess, command: str, expected: str, cwd, made: set[str]):
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"reft {command}: error: "), lines[0]
    assert expected in lines[0], lines[0]
    assert r.stdout == ""
    assert not (cwd / "out").exists()
    assert {p.name for p in cwd.iterdir()} == made  # no run folder, nothing else either


@pytest.mark.parametrize("argv, expected", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_flag_fails_fast_in_one_line(argv, expected, tmp_path):
    r = _run(argv, tmp_path)
    _check(r, argv[0], expected, tmp_path, set())


@pytest.mark.parametrize("argv, text, expected", YAML_CASES,
                         ids=[f"{c[0][0]}:{c[1].strip()}" for c in YAML_CASES])
def test_bad_yaml_value_fails_fast_naming_file_and_flag(argv, text, expected, tmp_path):
    (tmp_path / "bad.yaml").write_text(text)
    r = _run([*argv, "--config", "bad.yaml"], tmp_path)
    _check(r, argv[0], expected, tmp_path, {"bad.yaml"})


def test_a_flag_overrides_a_bad_yaml_value(tmp_path):
    """The file's batch_size 0 never takes effect: the run gets as far as the model."""
    (tmp_path / "bad.yaml").write_text("batch_size: 0\n")
    r = _run(["sft", "--config", "bad.yaml", "--batch-size", "4", *TRAIN], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "batch-size" not in r.stderr and "nonexistent" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
