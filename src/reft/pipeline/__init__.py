"""``reft pipeline CONFIG.yaml``: the paper's protocol from one YAML file.

warm-up SFT -> the chosen methods, each from the warm-up's ``final/`` (continued SFT,
ReFT, offline/online self-training) -> optional reranker -> evaluation of every model,
the warm-up included, on the test set -> ``results.json`` -> ``results.md``,
``report.html`` and ``plots/``.

The output directory holds ``pipeline.yaml`` (the resolved config), one training run
directory per stage (``model/`` when the tiny model is built, ``warmup/``, ``sft/``,
``reft/``, ``offline_st/``, ``online_st/``, ``reranker/``), each with ``eval/``
(``eval.json``, ``predictions.jsonl``), then ``results.json`` and the report.

Rerunning resumes: a stage is finished once its ``DONE.json`` is written (atomically,
after the stage), and is skipped while its settings and those of the stages it starts
from are unchanged. A stage stopped midway continues from its checkpoints with its own
``resume``; without checkpoints it starts again from a clean directory. Paths in the
YAML are relative to the directory ``reft pipeline`` is run from.

The code lives in ``reft.pipeline.spec`` (the YAML and its checking),
``reft.pipeline.runner`` (resumable, skippable stages) and ``reft.pipeline.stages``
(the stages themselves and ``run_pipeline``); every public name is importable from here.
"""

from __future__ import annotations

from reft.pipeline.runner import Runner, Stage
from reft.pipeline.spec import (
    MANAGED,
    METHODS,
    SECTIONS,
    DataSpec,
    Pipeline,
    RunArgs,
    TinyModel,
    load_pipeline,
    parse_pipeline,
    resolved_dict,
)
from reft.pipeline.stages import collect_results, load_data, run_pipeline

__all__ = [
    "MANAGED", "METHODS", "SECTIONS", "DataSpec", "Pipeline", "RunArgs", "Runner", "Stage",
    "TinyModel", "collect_results", "load_data", "load_pipeline", "parse_pipeline",
    "resolved_dict", "run_pipeline",
]
