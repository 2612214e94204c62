"""A few example predictions per method, from each evaluation's ``predictions.jsonl``.

For each evaluated stage the report shows the first right and the first wrong greedy
answers in test-set order (``PER_METHOD`` in all, ``pick``): the question, the
completion (CoT or program), the predicted and gold answers and whether it was right.
predictions.jsonl does not repeat the question; it is looked up by ``id`` in the test
file named by eval.json's settings when that file is still on this machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from reft.errors import UserError
from reft.report.files import read_json_object
from reft.report.runs import Run, display_name, method_order

PER_METHOD = 3
MAX_CHARS = 1500
"""Longer completions are cut (the page says so)."""


@dataclass(frozen=True)
class Shown:
    id: str
    question: str | None
    completion: str
    pred: str | None
    gold: str | None
    correct: bool


def sources(run: Run) -> list[tuple[str, Path, dict]]:
    """(method label, predictions.jsonl, eval settings) per evaluation of the run, in paper
    order; over several seeds, the first seed's."""
    if run.kind == "eval":
        path = run.path / "predictions.jsonl"
        settings = read_json_object(run.path / "eval.json").get("settings")
        return [(run.path.name, path, settings or {})] if path.is_file() else []
    stages = run.seed_runs[0].stages if run.seed_runs else run.stages
    by_name = {s.name: s for s in stages}
    out = []
    for name in method_order(by_name):
        stage = by_name[name]
        path = stage.path / "eval" / "predictions.jsonl"
        if path.is_file():
            label = display_name(name) if run.kind in ("pipeline", "seeds") else name
            settings = (stage.eval or {}).get("settings")
            out.append((label, path, settings if isinstance(settings, dict) else {}))
    return out


def pick(path: Path, n: int = PER_METHOD) -> list[dict]:
    """The first right rows then the first wrong ones, in file order: ``n`` in all, about
    half each (right rounded up), the other kind filling in when one is short. Reads only
    as far as needed; unreadable lines are skipped."""
    right: list[dict] = []
    wrong: list[dict] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "correct" in row:
                (right if row["correct"] else wrong).append(row)
            if len(right) >= n and len(wrong) >= n:
                break
    take_right = min(len(right), n - min(len(wrong), n // 2))
    return right[:take_right] + wrong[:n - take_right]


def _questions(settings: dict, cache: dict[str, dict[str, str]]) -> dict[str, str]:
    """id -> question from the evaluation's test file, when it is on this machine."""
    source = settings.get("test_file")
    if not isinstance(source, str) or not source or not Path(source).exists():
        return {}
    if source not in cache:
        from reft.data import load_examples

        try:
            examples = load_examples(source, data_format=settings.get("data_format", "auto"),
                                     columns=settings.get("columns", "") or "",
                                     task=settings.get("task", "numeric"),
                                     cot=settings.get("cot", "nl"),
                                     hf_split=settings.get("hf_split", "test"))
        except (UserError, OSError, ValueError, KeyError):
            examples = []
        cache[source] = {e.id: e.question for e in examples}
    return cache[source]


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def examples_for(run: Run, n: int = PER_METHOD) -> list[tuple[str, list[Shown]]]:
    """(method label, examples) per evaluated method of ``run``."""
    cache: dict[str, dict[str, str]] = {}
    out = []
    for label, path, settings in sources(run):
        rows = pick(path, n)
        questions = _questions(settings, cache) if any("question" not in r for r in rows) else {}
        shown = [Shown(id=str(r.get("id", "")),
                       question=_text(r.get("question") or questions.get(str(r.get("id")))),
                       completion=str(r.get("completion") or ""),
                       pred=_text(r.get("pred")), gold=_text(r.get("gold")),
                       correct=bool(r["correct"])) for r in rows]
        if shown:
            out.append((label, shown))
    return out
