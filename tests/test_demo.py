"""The demo's embedded pipeline config is valid for both plans (running it is the README's job)."""

from pathlib import Path

import pytest

from reft.demo import DEFAULT_COT, NL_PLANS, PYTHON_PLANS, pipeline_spec, plan_for, write_data
from reft.pipeline import parse_pipeline


@pytest.mark.parametrize("plan", ["full", "quick"])
@pytest.mark.parametrize("cot", ["nl", "python"])
def test_demo_spec_parses(plan, cot, tmp_path: Path):
    p = parse_pipeline(pipeline_spec(plan_for(plan, cot), tmp_path, 0, cot), "reft demo", str(tmp_path))
    assert p.methods == ("sft", "reft")
    # continued SFT and ReFT run the same number of epochs from the same warm-up
    assert p.configs["sft"].epochs == p.configs["reft"].epochs
    assert p.configs["sft"].model == p.configs["reft"].model
    from reft.pipeline.spec import rerankers

    # rerank@k is reported, each model reranked by its own reward model
    assert list(rerankers(p)) == ["warmup", "sft", "reft"]


def test_demo_data_is_disjoint_and_sized(tmp_path: Path):
    import json

    plan = {**NL_PLANS["quick"], "n_train": 30, "n_test": 20}
    write_data(tmp_path, plan, seed=1, cot="nl")
    train = json.loads((tmp_path / "data" / "train.json").read_text())
    test = json.loads((tmp_path / "data" / "test.json").read_text())
    assert (len(train), len(test)) == (30, 20)
    assert not {r["question"] for r in train} & {r["question"] for r in test}


def test_the_default_demo_is_p_cot_on_the_mental_level_and_nl_keeps_the_tiny_level():
    from reft.cli import build_parser

    assert build_parser().parse_args(["demo"]).cot == DEFAULT_COT == "python"
    assert {plan_for(name, "python")["level"] for name in ("full", "quick")} == {"mental"}
    assert {plan_for(name, "nl")["level"] for name in ("full", "quick")} == {"tiny"}
    assert plan_for("full", "python") is PYTHON_PLANS["full"]
    assert plan_for("quick", "nl") is NL_PLANS["quick"]


@pytest.mark.parametrize("cot", ["python", "nl"])
def test_the_test_set_is_read_only_by_the_final_evaluation(cot, tmp_path: Path):
    """ReFT's periodic top-1 (the report's curve) reads a validation split held out from the
    training split, not the test set; the quick plans evaluate nothing during training."""
    import json

    from reft.data.synthetic import content_key, generate_problems

    plan = {**plan_for("full", cot), "n_train": 60, "n_val": 25, "n_test": 20}
    write_data(tmp_path, plan, seed=3, cot=cot)
    p = parse_pipeline(pipeline_spec(plan, tmp_path, 3, cot), "reft demo", str(tmp_path))
    assert p.configs["reft"].val_file == str(tmp_path / "data" / "val.json")
    assert p.configs["reft"].eval_every > 0
    assert not any(getattr(c, "val_file", "") == p.data.test_file for c in p.configs.values())
    val = json.loads((tmp_path / "data" / "val.json").read_text())
    train = json.loads((tmp_path / "data" / "train.json").read_text())
    assert len(val) == 25 and len(train) == 60
    # the held-out problems share family and numbers with no training problem
    problems = generate_problems(60 + 3 * 25 + 100, 3, "train", plan["level"])
    by_question = {q.question: content_key(q.family, q.params) for q in problems}
    train_keys = {by_question[e["question"]] for e in train}
    assert not {by_question[e["question"]] for e in val} & train_keys
    quick = parse_pipeline(pipeline_spec(plan_for("quick", cot), tmp_path / "q", 0, cot), "reft demo",
                           str(tmp_path / "q"))
    assert quick.configs["reft"].val_file == "" and quick.configs["reft"].eval_every == 0
