"""``reft demo``: the whole ReFT protocol on the embedded default, on a laptop CPU.

synthetic task -> tiny model + tokenizer -> SFT warm-up -> continued SFT and ReFT from
the same warm-up (same number of epochs; SFT with its own tuned learning rate) ->
evaluation (top-1, vote@k, rerank@k) -> results.json, results.md, report.html.

It is ``reft pipeline`` with an embedded config (see ``plan``), so an interrupted demo
resumes where it stopped when rerun with the same options.
"""

from __future__ import annotations

from pathlib import Path

from reft.errors import UserError


def _plan(level: str, n_train: int, warmup: tuple[int, float], epochs: int, sft_lr: float,
          reft_lr: float, *, n_test: int = 500, mini_batch: int = 64, k: int = 4,
          sample_k: int = 2, curves: bool = True) -> dict:
    """A demo plan: ``warmup`` is (epochs, lr); SFT and ReFT both get ``epochs``; ``curves``
    evaluates ReFT on 200 validation problems every 16 steps (the report's accuracy plot;
    held out from the training split, never the test set)."""
    return {
        "n_train": n_train, "n_test": n_test, "n_val": 200 if curves else 0, "level": level,
        "model": {"init": "tiny", "hidden_size": 128, "layers": 4},
        "warmup": {"epochs": warmup[0], "lr": warmup[1], "batch_size": 8},
        "sft": {"epochs": epochs, "lr": sft_lr, "batch_size": 8, "warmup_ratio": 0.0},
        "reft": {"epochs": epochs, "lr": reft_lr, "rollout_batch_size": 64,
                 "mini_batch_size": mini_batch, "eval_every": 16 if curves else 0,
                 "eval_examples": 200 if curves else 100, "save_every": 1000},
        "eval": {"k": k, "gen_batch_size": 250},
        "reranker": {"epochs": 1, "batch_size": 32},
        "sample": {"k": sample_k},
        "max_new_tokens": 96,
    }


# Budgets sized for 20 minutes on an idle 2-core CPU, chosen on a validation split of the
# training problems (never the test set; runs recorded in benchmarks/RESULTS.md, "Demo
# tuning" and "Session 6").
#
# The default (P-CoT) plans use the ``mental`` level: half of the annotated programs assign
# each intermediate result as a number the annotator worked out (``daily = 14``) instead of
# the operation (``daily = hours * rate``). Both are correct; the tiny model copies operations
# reliably and does arithmetic badly, so its programs that write the operations are right
# far more often. Continued SFT imitates the mix; ReFT can learn from its own samples'
# rewards to write the operations. The warm-up is short (4 epochs over 2000 problems; the
# paper's is 1-2), and both methods then get 2 epochs: SFT at its best learning rate of those
# tried (1e-4 / 3e-4 / 1e-3), ReFT at 3e-5.
PYTHON_PLANS: dict[str, dict] = {
    "full": _plan("mental", 2000, (4, 1e-3), 2, 3e-4, 3e-5),
    # a smoke-sized run (~3 min): too short a warm-up to show the habit switch
    "quick": _plan("mental", 500, (6, 2e-3), 1, 3e-4, 3e-5, n_test=300, k=2, sample_k=1,
                   curves=False),
}

# The N-CoT plans (``--cot nl``), on the ``tiny`` level, where the model must also do every
# step's arithmetic. The warm-up is long (16 epochs over 1000 problems at 1e-3, batch 8), so
# both methods start from a near-converged SFT model; continued SFT keeps its best learning
# rate of 3e-4 / 1e-3, ReFT its best of the PPO settings tried (many small steps: lr 1e-5,
# one 64-rollout mini-batch per PPO epoch). ReFT does not beat SFT here (README).
NL_PLANS: dict[str, dict] = {
    "full": _plan("tiny", 1000, (16, 1e-3), 4, 3e-4, 1e-5),
    "quick": _plan("tiny", 500, (12, 1e-3), 1, 3e-4, 3e-5, mini_batch=32, k=2, curves=False),
}


DEFAULT_COT = "python"
"""The CoT style ``reft demo`` runs without ``--cot`` (the one where ReFT has room to learn)."""


def plan_for(name: str, cot: str) -> dict:
    """The budgets of plan ``name`` ("full" or "quick") for CoT style ``cot``."""
    return (PYTHON_PLANS if cot == "python" else NL_PLANS)[name]


def pipeline_spec(plan: dict, out: Path, seed: int, cot: str) -> dict:
    """The ``reft pipeline`` config the demo runs (paths inside ``out``)."""
    gen = {"max_new_tokens": plan["max_new_tokens"]}
    return {
        "out": str(out), "cot": cot, "seed": seed,
        "model": plan["model"],
        "data": {"train_file": str(out / "data" / "train.json"),
                 "test_file": str(out / "data" / "test.json"),
                 **({"val_file": str(out / "data" / "val.json")} if plan["n_val"] else {})},
        "methods": ["sft", "reft"],
        "warmup": {**plan["warmup"], "log_every": 10},
        "sft": {**plan["sft"], "log_every": 10},
        "reft": {**plan["reft"], **gen, "log_every": 1},
        "eval": {**plan["eval"], **gen},
        "reranker": {**plan["reranker"], "sample": {**plan["sample"], **gen}},
    }


def write_data(out: Path, plan: dict, seed: int, cot: str) -> None:
    """The synthetic train/test splits (disjoint by construction) and a validation split held
    out from the training one, in ReFT's JSON format."""
    from reft.data.synthetic import generate, generate_validation, write_reft_json

    data = out / "data"
    if not (data / "train.json").exists():
        write_reft_json(generate(plan["n_train"], seed, "train", cot, plan["level"]),
                        data / "train.json", cot)
    if plan["n_val"] and not (data / "val.json").exists():
        write_reft_json(generate_validation(plan["n_val"], plan["n_train"], seed, cot, plan["level"]),
                        data / "val.json", cot)
    if not (data / "test.json").exists():
        # the test set does not depend on --seed: every seed is measured on the same problems
        write_reft_json(generate(plan["n_test"], 0, "test", cot, plan["level"]),
                        data / "test.json", cot)


def run_demo(out: Path, quick: bool = False, seed: int = 0, cot: str = "python") -> dict:
    """The whole protocol on the embedded synthetic task into ``out``; the pipeline's results."""
    from reft.pipeline import parse_pipeline, run_pipeline

    plan = plan_for("quick" if quick else "full", cot)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    write_data(out, plan, seed, cot)
    pipe = parse_pipeline(pipeline_spec(plan, out, seed, cot), "reft demo", str(out))
    return run_pipeline(pipe)
