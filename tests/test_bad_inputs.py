"""Bad settings fail fast, through the real CLI: exit status 2, one line naming the flag.

Every case runs ``python -m reft ...`` in an empty directory with ``--model`` and the data
files pointing nowhere: the range check must come before any model, data or run directory
is touched, so the message names the bad flag (not the missing model) and ``--out`` is
never created.

Below them, what needs a real (tiny, session-wide) model: an SFT whose prompts leave no
room for the CoT, a read-only ``--out`` and a full disk (simulated in-process: ENOSPC from
every write through ``reft.runtime.io``). A write the machine refuses exits with status 1,
in one line ``cannot write PATH: REASON``, and leaves nothing half-written.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import error_lines, reft_main

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
    # a command group without its subcommand
    (["data"], "a subcommand is required (get, synth, check)"),
    (["model"], "a subcommand is required (init)"),
    (["reranker"], "a subcommand is required (train)"),
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


def _run(argv: list[str], cwd, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([*prefix, sys.executable, "-m", "reft", *map(str, argv)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


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


def test_sample_out_that_is_a_folder_fails_before_loading_anything(tmp_path):
    (tmp_path / "outdir").mkdir()
    r = _run(["sample", *NOWHERE, "--data-file", "/nonexistent/test.json", "--out", "outdir"],
             tmp_path)
    _check(r, "sample", "--out outdir: is a folder; pass the JSON-lines file to write", tmp_path,
           {"outdir"})
    assert not any((tmp_path / "outdir").iterdir())


LONG_TEMPLATE = "Question:\n{question}\n" + "Read it twice and think it through, step by step. " * 60


@pytest.mark.parametrize("flags", [["--max-length", "16"], ["--template", LONG_TEMPLATE]],
                         ids=["max-length 16", "long template"])
def test_sft_without_room_for_the_cot_names_max_length(flags, tmp_path, tiny_model_dir, tiny_data):
    """Every prompt fills --max-length: no CoT token is left to learn from (was a
    ZeroDivisionError in the first step). Nor a stray transformers warning about the length."""
    r = _run(["sft", "--model", tiny_model_dir, "--train-file", tiny_data.train, "--out", "out",
              *flags], tmp_path)
    _check(r, "sft", "no room for the chain of thought", tmp_path, set())  # no run folder
    assert r.stderr.startswith("reft sft: error: --max-length ") and "raise --max-length" in r.stderr


def _unprivileged() -> tuple[str, ...]:
    """A command prefix under which a 0555 folder is read-only: root writes anywhere unless
    it gives up CAP_DAC_OVERRIDE (setpriv, util-linux)."""
    if os.geteuid() != 0:
        return ()
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a 0555 folder is writable")
    return ("setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override")


@pytest.fixture
def read_only(tmp_path):
    """``tmp_path/ro``, an empty folder nobody may write to."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    yield ro
    ro.chmod(0o755)


@pytest.mark.parametrize("command, out, written", [
    ("eval", "ro/out", "ro/out/eval.json"),
    ("sample", "ro/samples.jsonl", "ro/samples.jsonl"),
    ("sft", "ro/out", "ro/out"),
])
def test_read_only_out_fails_in_one_line(command, out, written, read_only, tmp_path,
                                         tiny_model_dir, tiny_data):
    """A refused write is exit status 1 (the machine's fault, not the input's); eval and
    sample find out before loading the model."""
    data = {"eval": "--test-file", "sample": "--data-file", "sft": "--train-file"}[command]
    path = tiny_data.test if command != "sft" else tiny_data.train
    r = _run([command, "--model", tiny_model_dir, data, path, "--out", out], tmp_path,
             _unprivileged())
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 1, r.stderr
    assert error_lines(r.stderr) == [f"reft {command}: error: cannot write {written}: "
                                     "Permission denied"], r.stderr
    assert not any(read_only.iterdir())


class _FullFile:
    """A file on a full disk: opening works, writing fails (ENOSPC)."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDisk:
    """``os`` as ``reft.runtime.io`` sees it when the disk is full."""

    def __getattr__(self, name: str):
        return getattr(os, name)

    @staticmethod
    def fdopen(fd, *args, **kwargs):
        return _FullFile(os.fdopen(fd, *args, **kwargs))


def test_full_disk_eval_says_so_in_one_line_and_leaves_no_temporary_file(
        monkeypatch, tmp_path, tiny_model_dir, tiny_data, capsys):
    import reft.runtime.io

    monkeypatch.setattr(reft.runtime.io, "os", _FullDisk())
    out = tmp_path / "out"
    rc, _, err = reft_main(capsys, "eval", "--model", tiny_model_dir, "--test-file", tiny_data.test,
                           "--max-examples", 2, "--max-new-tokens", 4, "--out", out)
    assert rc == 1, err
    assert error_lines(err) == [f"reft eval: error: cannot write {out / 'predictions.jsonl'}: "
                                "No space left on device"], err
    assert not [p for p in Path(tmp_path).rglob("*") if p.is_file()]  # no .tmp file, nothing


def test_full_disk_sft_says_so_in_one_line_and_leaves_no_temporary_file(
        monkeypatch, tmp_path, tiny_model_dir, tiny_data, capsys):
    import reft.runtime.io

    monkeypatch.setattr(reft.runtime.io, "os", _FullDisk())
    out = tmp_path / "out"
    rc, _, err = reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--epochs", 1, "--out", out)
    assert rc == 1, err
    lines = error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"reft sft: error: cannot write {out}/"), err
    assert lines[0].endswith(": No space left on device"), err
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert not [p for p in left if "tmp" in p or "/." in p or p.startswith(".")], left
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir()), left


def test_full_disk_sample_says_so_in_one_line(monkeypatch, tmp_path, tiny_model_dir, tiny_data,
                                              capsys):
    import reft.rollout.samples_file

    class NoSync(_FullDisk):  # the records reach the file, syncing them fails
        @staticmethod
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(reft.rollout.samples_file, "os", NoSync())
    out = tmp_path / "samples.jsonl"
    rc, _, err = reft_main(capsys, "sample", "--model", tiny_model_dir, "--data-file",
                           tiny_data.test, "--k", 1, "--max-examples", 2, "--max-new-tokens", 4,
                           "--out", out)
    assert rc == 1, err
    assert error_lines(err) == [f"reft sample: error: cannot write {out}: No space left on device"]
