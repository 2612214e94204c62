"""``reft pipeline``: config checking, a CI run on real SVAMP, resume after a clean stop or a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from reft.cli.commands import pipeline as main
from reft.errors import UserError
from reft.pipeline import load_pipeline, parse_pipeline
from tests.fixtures import metrics_from_predictions

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

# The training loops set torch to use every core; on a busy 2-core CI machine that makes
# a tiny model tens of times slower (threads spin waiting for each other). One thread is
# plenty for these models, so the subprocesses pin it before reft starts.
PINNED_CLI = ("import sys, torch; torch.set_num_threads(1); "
              "torch.set_num_threads = lambda n: None; "
              "from reft.cli import main; sys.exit(main(sys.argv[1:]))")


def cli(python: str, *args: str, **kw) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [python, "-c", PINNED_CLI, *args]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           **kw.pop("env_extra", {})}
    if kw.pop("background", False):
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


@pytest.fixture
def one_thread(monkeypatch):
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    yield
    monkeypatch.undo()
    torch.set_num_threads(n)


def tiny_config(tmp_path: Path) -> Path:
    """A pipeline on the synthetic task with a 2-layer, 32-wide model: a few seconds a stage."""
    from reft.data.synthetic import generate, write_reft_json

    train = write_reft_json(generate(24, seed=0, split="train"), tmp_path / "train.json")
    test = write_reft_json(generate(8, seed=0, split="test"), tmp_path / "test.json")
    cfg = {
        "out": str(tmp_path / "run"),
        "model": {"init": "tiny", "hidden_size": 32, "layers": 2, "heads": 2, "vocab_size": 320},
        "data": {"train_file": str(train), "test_file": str(test)},
        "methods": ["sft", "reft"],
        "warmup": {"epochs": 1, "batch_size": 8, "max_length": 160},
        "sft": {"epochs": 1, "batch_size": 8, "max_length": 160},
        "reft": {"max_steps": 2, "rollout_batch_size": 4, "mini_batch_size": 4,
                 "max_new_tokens": 16, "save_every": 1},
        "eval": {"k": 0, "max_new_tokens": 16},
    }
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_predictions(eval_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (eval_dir / "predictions.jsonl").read_text().splitlines()]


def mtime(path: Path) -> int:
    return (path / "model.safetensors").stat().st_mtime_ns


def check_results(out: Path, methods: list[str], k: int) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"methods", "n_test", "seed", "wall_s", "k", "stages"}
    assert list(results["methods"]) == ["warmup", *methods]
    for name, row in results["methods"].items():
        assert ("vote@k" in row) == (k > 0) and ("pass@k" in row) == (k > 0)
        # each accuracy is what the method's written predictions give by hand
        records = read_predictions(out / name / "eval")
        assert len(records) == results["n_test"]
        expected = metrics_from_predictions(records, k)
        assert {m: row[m] for m in expected} == pytest.approx(expected, abs=1e-12), name
    assert results["k"] == k and results["n_test"] > 0 and results["wall_s"] > 0
    for name in ["warmup", *methods]:
        stage = results["stages"][name]
        assert (out / stage["run_dir"] / "final" / "config.json").is_file()
        assert stage["wall_s"] > 0
        assert (out / name / "eval" / "eval.json").is_file()
        assert (out / name / "eval" / "predictions.jsonl").is_file()
        assert (out / name / "DONE.json").is_file()
    assert (out / "results.md").is_file() and (out / "report.html").is_file()
    assert yaml.safe_load((out / "pipeline.yaml").read_text())["reft"]["beta"] == 0.05
    return results


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_parse(path):
    p = load_pipeline(path)
    assert p.configs["warmup"].train_file and p.configs["eval"].test_file
    assert set(p.methods) <= {"sft", "reft", "offline_st", "online_st"}


def test_shipped_configs_hold_the_paper_values():
    assert {p.stem for p in CONFIGS} >= {"gsm8k_nl_codellama", "gsm8k_python_codellama",
                                         "svamp_nl_galactica", "mathqa_mc_codellama", "ci_svamp_tiny"}
    nl = load_pipeline(ROOT / "configs/gsm8k_nl_codellama.yaml").configs
    py = load_pipeline(ROOT / "configs/gsm8k_python_codellama.yaml").configs
    assert (nl["reft"].beta, py["reft"].beta) == (0.05, 0.01)
    r, w = nl["reft"], nl["warmup"]
    assert (r.lr, r.ppo_epochs, r.clip_eps, r.value_clip, r.vf_coef, r.gamma, r.lam) == (
        3e-7, 2, 0.2, 0.2, 5.0, 1.0, 0.95)
    assert (r.epochs, r.sampling.temperature, r.rollout_batch_size) == (300, 1.0, 32)
    assert (w.epochs, w.lr, w.batch_size * w.grad_accum) == (2, 1e-5, 48)
    assert nl["eval"].k == 0  # greedy top-1
    assert load_pipeline(ROOT / "configs/mathqa_mc_codellama.yaml").run.task == "mc"


def test_out_defaults_to_runs_and_config_name(tmp_path):
    p = parse_pipeline({"model": "m", "data": {"train_file": "a", "test_file": "b"}}, "x/my.yaml")
    assert str(p.out) == "runs/my" and p.methods == ("sft", "reft")
    assert p.configs["reft"].model == "runs/my/warmup/final"
    assert parse_pipeline({"model": "m", "data": {"train_file": ["a", "c"], "test_file": "b"}},
                          "my.yaml", out="o").train_files == ("a", "c")


BASE = {"model": "m", "data": {"train_file": "a", "test_file": "b"}}


@pytest.mark.parametrize("extra, words", [
    ({"reft": {"kl_coeff": 0.1}}, ["pipe.yaml: reft", "kl_coeff"]),
    ({"eval": {"k": 2, "beam": 3}}, ["pipe.yaml: eval", "beam"]),
    ({"model": {"init": "tiny", "width": 3}}, ["pipe.yaml: model", "width"]),
    ({"data": {"train_file": "a", "test_file": "b", "split": "x"}}, ["pipe.yaml: data", "split"]),
    ({"warmpu": {}}, ["pipe.yaml", "top-level", "warmpu"]),
    ({"sft": {"model": "other"}}, ["pipe.yaml: sft", "'model' is set by the pipeline"]),
    ({"methods": ["sft", "ppo"]}, ["methods", "ppo"]),
    ({"reft": {"epochs": "many"}}, ["pipe.yaml: reft", "'epochs' must be int"]),
    ({"reranker": {"epochs": 1}}, ["reranker", "eval: k:"]),
    ({"reranker": {"sample": {"k": 2, "top_p": 1}}, "eval": {"k": 2}},
     ["reranker.sample", "top_p"]),
    ({"data": {"test_file": "b"}}, ["pipe.yaml: data", "train_file"]),
])
def test_bad_config_is_one_line_naming_key_and_section(extra, words):
    with pytest.raises(UserError) as e:
        parse_pipeline({**BASE, **extra}, "pipe.yaml")
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_reranker_section_feeds_rerank_at_k():
    """As the release (exps/paper_exps/Rerank): the warm-up samples the training questions, and
    every evaluated model is reranked by its own reward model, initialised from it."""
    from reft.pipeline.spec import rerankers

    p = parse_pipeline({**BASE, "reranker": {"epochs": 1, "sample": {"k": 3}}, "eval": {"k": 2}},
                       "pipe.yaml", out="o")
    assert (p.sample.k, p.sample.model, p.sample.out) == (3, "o/warmup/final", "o/reranker/samples.jsonl")
    own = rerankers(p)
    assert list(own) == ["warmup", *p.methods] and p.methods
    for name, cfg in own.items():
        assert (cfg.model, cfg.out) == (f"o/{name}/final", f"o/{name}/reranker")
        assert cfg.samples == "o/reranker/samples.jsonl" and cfg.epochs == 1
    # a reward model named in eval is used as it is, for every model
    p = parse_pipeline({**BASE, "reranker": {"epochs": 1}, "eval": {"k": 2, "rerank": "rm"}}, "pipe.yaml", out="o")
    assert rerankers(p) == {} and p.configs["eval"].rerank == "rm"


def test_unknown_key_exits_2_with_one_line(tmp_path, python):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "reft": {"kl_coeff": 0.1}}))
    r = subprocess.run([python, "-m", "reft", "pipeline", str(bad)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "reft" in r.stderr and "kl_coeff" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------- runs


@pytest.mark.slow
def test_ci_config_runs_on_real_svamp(tmp_path, shared_data, python):
    """The shipped config as it is, its data by name, offline from a cache seeded with the
    shared copies (byte-identical to the release's: tests/data/test_fetch.py)."""
    from reft.data import fetch

    cfg = yaml.safe_load((ROOT / "configs/ci_svamp_tiny.yaml").read_text())
    assert cfg["data"]["train_file"] == "reft:svamp_nl"
    cfg["out"] = str(tmp_path / "ci")
    path = tmp_path / "ci.yaml"
    path.write_text(yaml.safe_dump(cfg))
    hf_home = tmp_path / "hf"
    for name, copy in (("reft:svamp_nl", "svamp/svamp_nl.json"), ("reft:svamp_test", "svamp/svamp_test_set.json")):
        dest = hf_home / "reft" / "data" / fetch.RELEASE_COMMIT / fetch.NAMES[name].out_name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / copy, dest)
    r = cli(python, "pipeline", str(path), timeout=300,
            env_extra={"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    results = check_results(tmp_path / "ci", ["sft", "reft"], k=2)
    assert results["n_test"] == 32 and results["k"] == 2  # pass@k and vote@k checked above
    assert "pipeline: reft: finished" in r.stdout
    assert "ReFT" in (tmp_path / "ci" / "results.md").read_text()


@pytest.mark.slow
def test_rerun_skips_finished_stages_and_redoes_changed_ones(tmp_path, capsys, one_thread):
    path = tiny_config(tmp_path)
    out = tmp_path / "run"
    main(Namespace(config=str(path)))
    first = capsys.readouterr().out
    assert "pipeline: warmup: started" in first and "pipeline: reft: finished" in first
    check_results(out, ["sft", "reft"], k=0)
    stamps = {s: mtime(out / s / "final") for s in ("warmup", "sft")}

    # a stage without DONE.json is resumed from its checkpoints; finished ones are skipped
    (out / "reft" / "DONE.json").unlink()
    (out / "results.json").unlink()
    (out / "results.md").unlink()
    main(Namespace(config=str(path)))
    second = capsys.readouterr().out
    for stage in ("model", "warmup", "sft", "warmup/eval", "sft/eval"):
        assert f"pipeline: {stage}: skipped" in second
    assert "pipeline: reft: resuming from its checkpoints" in second
    assert "pipeline: reft/eval: started" in second  # its model was rebuilt
    assert stamps == {s: mtime(out / s / "final") for s in ("warmup", "sft")}
    check_results(out, ["sft", "reft"], k=0)

    # changed settings redo the stage and what is built on it, nothing else
    cfg = yaml.safe_load(path.read_text())
    cfg["sft"]["lr"] = 1e-4
    cfg["methods"] = ["sft"]
    path.write_text(yaml.safe_dump(cfg))
    main(Namespace(config=str(path)))
    third = capsys.readouterr().out
    assert "pipeline: warmup: skipped" in third and "pipeline: warmup/eval: skipped" in third
    assert "pipeline: sft: settings or an earlier stage changed; starting it again" in third
    assert "pipeline: sft/eval: started" in third and "pipeline: reft" not in third
    assert mtime(out / "warmup" / "final") == stamps["warmup"]
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["warmup", "sft"] and list(results["stages"]) == [
        "model", "warmup", "sft"]


@pytest.mark.slow
def test_reranker_trained_on_samples_gives_rerank_at_k(tmp_path, capsys, one_thread):
    pytest.importorskip("reft.training.reranker")
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg.update(methods=[], eval={"k": 2, "max_new_tokens": 8},
               reranker={"epochs": 1, "batch_size": 16, "max_length": 160,
                         "sample": {"k": 3, "max_new_tokens": 8}})
    path.write_text(yaml.safe_dump(cfg))
    main(Namespace(config=str(path)))
    said = capsys.readouterr().out
    assert "pipeline: reranker: finished" in said and "pipeline: warmup/reranker: finished" in said
    out = tmp_path / "run"
    samples = [json.loads(line) for line in (out / "reranker/samples.jsonl").open()]
    assert len(samples) == 24 and all(len(r["samples"]) == 3 for r in samples)
    assert yaml.safe_load((out / "warmup/reranker/config.yaml").read_text())["model"].endswith("warmup/final")
    results = json.loads((out / "results.json").read_text())
    assert list(results["stages"]) == ["model", "warmup", "reranker", "warmup/reranker"]
    preds = read_predictions(out / "warmup/eval")
    assert all(len(p["rerank_scores"]) == 2 for p in preds)
    # rerank@k: the correctness of each question's highest-scored sample, averaged (and the
    # other accuracies from the same predictions)
    expected = metrics_from_predictions(preds, k=2)
    assert expected.keys() == {"top1", "vote@k", "pass@k", "rerank@k"}
    row = results["methods"]["warmup"]
    assert {m: row[m] for m in expected} == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
def test_killed_pipeline_resumes_without_redoing_the_warmup(tmp_path, capsys, python, one_thread):
    path = tiny_config(tmp_path)
    out = tmp_path / "run"
    proc = cli(python, "pipeline", str(path), background=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "warmup" / "DONE.json").exists():
            assert proc.poll() is None, "the pipeline ended before the warm-up finished"
            assert time.monotonic() < deadline, "the warm-up did not finish in time"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    warm = mtime(out / "warmup" / "final")
    assert not (out / "results.json").exists()

    main(Namespace(config=str(path)))
    printed = capsys.readouterr().out
    assert "pipeline: warmup: skipped" in printed
    assert mtime(out / "warmup" / "final") == warm
    check_results(out, ["sft", "reft"], k=0)


def test_pipeline_module_does_not_import_torch(python):
    code = "import sys, reft.pipeline; print('torch' in sys.modules)"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.slow
def test_reft_periodic_top1_reads_the_validation_file_not_the_test_file(tmp_path, monkeypatch,
                                                                        one_thread):
    """``data.val_file`` is what ReFT's periodic top-1 reads (the first ``eval_examples`` of
    it); the test file only reaches the final evaluations."""
    import reft.training.ppo as ppo
    from reft.data.synthetic import generate_validation, write_reft_json

    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    val = write_reft_json(generate_validation(5, 24, seed=0), tmp_path / "val.json")
    cfg["data"]["val_file"] = str(val)
    cfg.update(methods=["reft"])
    cfg["reft"].update(max_steps=1, eval_every=1, eval_examples=3)
    path.write_text(yaml.safe_dump(cfg))
    seen, real = [], ppo.train_ppo
    monkeypatch.setattr(ppo, "train_ppo", lambda c, train, held_out: seen.append(held_out) or real(c, train, held_out))
    main(Namespace(config=str(path)))
    (held_out,) = seen
    assert [e.id for e in held_out] == ["synth-val-0", "synth-val-1", "synth-val-2"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "reft" / "metrics.jsonl").open()]
    assert any("eval/top1" in r for r in rows)
