"""The demo's embedded pipeline config is valid for both plans (running it is the README's job)."""

from pathlib import Path

import pytest

from reft.demo import PLANS, pipeline_spec, plan_for, write_data
from reft.pipeline import parse_pipeline


@pytest.mark.parametrize("plan", sorted(PLANS))
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

    plan = {**PLANS["quick"], "n_train": 30, "n_test": 20}
    write_data(tmp_path, plan, seed=1, cot="nl")
    train = json.loads((tmp_path / "data" / "train.json").read_text())
    test = json.loads((tmp_path / "data" / "test.json").read_text())
    assert (len(train), len(test)) == (30, 20)
    assert not {r["question"] for r in train} & {r["question"] for r in test}


def test_quick_p_cot_plan_has_a_shorter_warm_up_and_leaves_the_plans_alone():
    before = repr(PLANS)
    assert plan_for("quick", "python")["warmup"]["epochs"] < PLANS["quick"]["warmup"]["epochs"]
    assert plan_for("quick", "nl") == PLANS["quick"]
    assert plan_for("full", "python") == PLANS["full"]
    assert repr(PLANS) == before
