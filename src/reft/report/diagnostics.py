"""Warnings for diagnostics that say a run went wrong, read from its metrics.jsonl.

* ``value/explained_variance`` below 0 at every logged step: the value model never
  predicted the returns better than their mean, so its advantages are noise;
* ``policy/kl`` above the run's ``kl_warn`` (config.yaml, else PPOConfig's default): the
  policy drifted far from the reference.
"""

from __future__ import annotations

from reft.report.plots import series
from reft.report.runs import Run, Stage, display_name, is_number


def default_kl_warn() -> float:
    from reft.config import PPOConfig

    return float(PPOConfig.kl_warn)


def _where(stage: Stage, run: Run) -> str:
    name = display_name(stage.name) if run.kind in ("pipeline", "seeds") else stage.name
    return f"{name} (seed {stage.seed})" if stage.seed is not None else name


def _explained_variance(stage: Stage) -> str | None:
    _, ev = series(stage.metrics, "value/explained_variance")
    if not ev or max(ev) >= 0:
        return None
    return (f"value/explained_variance stayed below 0 at all {len(ev)} logged steps "
            f"(best {max(ev):.3g}): the value model never beat predicting the mean return, "
            "so its advantages carry no signal")


def _kl(stage: Stage) -> str | None:
    steps, kl = series(stage.metrics, "policy/kl")
    limit = stage.config.get("kl_warn")
    limit = float(limit) if is_number(limit) else default_kl_warn()
    over = [(s, v) for s, v in zip(steps, kl, strict=True) if v > limit]
    if not over:
        return None
    step, worst = max(over, key=lambda p: p[1])
    return (f"policy/kl exceeded kl_warn = {limit:g} at {len(over)} of {len(kl)} logged steps "
            f"(max {worst:.3g} at step {step:g}): the policy drifted far from the reference")


def warnings_for(run: Run) -> list[str]:
    """One sentence per diagnostic that is off, naming the stage (and seed)."""
    out = []
    for stage in run.stages:
        for check in (_explained_variance, _kl):
            if (text := check(stage)) is not None:
                out.append(f"{_where(stage, run)}: {text}.")
    return out
