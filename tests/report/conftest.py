"""Fake run directories in the formats the training, eval and demo code write."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def sft_metrics(steps: int = 5, start_loss: float = 2.0) -> list[dict]:
    return [{"step": s, "epoch": s / steps, "loss/nll": start_loss / (s + 1), "optim/lr": 1e-5,
             "perf/tokens_per_s": 1000.0 + s} for s in range(1, steps + 1)]


def ppo_metrics(steps: int = 6) -> list[dict]:
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "epoch": s // 3, "reward/mean": 0.1 * s, "reward/accuracy": 0.08 * s,
               "policy/kl": 0.01 * s, "policy/approx_kl": 0.001, "policy/clipfrac": 0.05,
               "policy/entropy": 1.2, "loss/policy": -0.01, "loss/value": 0.3,
               "value/explained_variance": 0.2, "response/length": 60.0 + s,
               "response/truncated_frac": 0.0, "time/sample_s": 2.0, "time/update_s": 1.0}
        if s % 3 == 0:
            row["eval/top1"] = 0.3 + 0.02 * s
        rows.append(row)
    return rows


def make_training_dir(path: Path, metrics: list[dict], config: str, eval_json: dict | None = None
                      ) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(config, encoding="utf-8")
    write_jsonl(path / "metrics.jsonl", metrics)
    if eval_json is not None:
        (path / "eval").mkdir(exist_ok=True)
        (path / "eval" / "eval.json").write_text(json.dumps(eval_json), encoding="utf-8")
    return path


DEMO_RESULTS = {
    # given out of paper order on purpose; the table must reorder them
    "methods": {
        "reft": {"top1": 0.4567, "vote@k": 0.5, "rerank@k": 0.52},
        "sft": {"top1": 0.4123, "vote@k": 0.47},
        "warmup": {"top1": 0.25},
        "offline_st": {"top1": 0.43, "vote@k": 0.48, "rerank@k": None},
    },
    "n_test": 200, "seed": 7, "wall_s": 192.4, "k": 8,
    "stages": {"warmup": {"run_dir": "warmup", "wall_s": 40.0},
               "sft": {"run_dir": "sft", "wall_s": 50.0},
               "reft": {"run_dir": "reft", "wall_s": 90.0}},
}


QUESTIONS = {"q-0": ("Tom has 5 shells and finds 3 more. How many shells does he have?", "8"),
             "q-1": ("A box holds 4 rows of 6 eggs. How many eggs?", "24"),
             "q-2": ("Ann reads 7 pages a day for 3 days. How many pages?", "21"),
             "q-3": ("Leo had 10 apples and ate 4. How many are left?", "6")}


def write_test_file(path: Path) -> Path:
    """A test set in ReFT JSON, as a pipeline's data/test.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"item_id": i, "question": q, "answer_cot": None, "answer_value": a}
            for i, (q, a) in QUESTIONS.items()]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_eval(stage_dir: Path, test_file: Path, right: set[str], top1: float,
               pass_k: float | None = None) -> None:
    """eval/eval.json and eval/predictions.jsonl of a stage whose greedy answers are right
    for the ids in ``right`` (and off by one elsewhere)."""
    eval_json = {"n": len(QUESTIONS), "top1": top1, "k": 8,
                 "settings": {"test_file": str(test_file), "cot": "nl", "task": "numeric"}}
    if pass_k is not None:
        eval_json["pass@k"] = pass_k
    (stage_dir / "eval").mkdir(parents=True, exist_ok=True)
    (stage_dir / "eval" / "eval.json").write_text(json.dumps(eval_json), encoding="utf-8")
    rows = [{"id": i, "gold": a, "pred": a if i in right else str(int(a) + 1),
             "completion": f"{stage_dir.name} works it out <step> for {i}.",
             "correct": i in right} for i, (_q, a) in QUESTIONS.items()]
    write_jsonl(stage_dir / "eval" / "predictions.jsonl", rows)


@pytest.fixture
def builders() -> SimpleNamespace:
    """The builders above, for tests that make their own run directories."""
    return SimpleNamespace(training_dir=make_training_dir, sft_metrics=sft_metrics,
                           ppo_metrics=ppo_metrics, write_jsonl=write_jsonl,
                           write_test_file=write_test_file, write_eval=write_eval)


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    run = tmp_path / "demo"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(DEMO_RESULTS), encoding="utf-8")
    make_training_dir(run / "warmup", sft_metrics(4, 3.0), "model: tiny\nlr: 1.0e-05\nseed: 7\n")
    make_training_dir(run / "sft", sft_metrics(5, 2.0) + [{"step": 5, "eval/top1": 0.41}],
                      "model: warmup\nlr: 1.0e-05\nseed: 7\n")
    make_training_dir(run / "reft", ppo_metrics(), "model: warmup\nkl_coef: 0.05\nseed: 7\n")
    test_file = write_test_file(run / "data" / "test.json")
    write_eval(run / "sft", test_file, right={"q-1"}, top1=0.25)
    write_eval(run / "reft", test_file, right={"q-0", "q-1", "q-3"}, top1=0.75)
    return run


@pytest.fixture
def ppo_dir(tmp_path: Path) -> Path:
    eval_json = {"n": 50, "top1": 0.34, "vote@k": 0.4, "pass@k": 0.6, "k": 4,
                 "settings": {"temperature": 1.0, "k": 4}}
    return make_training_dir(tmp_path / "ppo_run", ppo_metrics(),
                             "model: runs/warmup\nkl_coef: 0.05\nseed: 3\n", eval_json)
