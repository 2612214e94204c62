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
    assert p.configs["eval"].rerank  # rerank@k is reported


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
