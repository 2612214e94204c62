"""Accuracy metrics over per-question results: majority voting, pass@k, reranking.

Pure Python (no torch), so reports and tests can use it anywhere.
"""

from __future__ import annotations

import math

from reft.answers import DEFAULT_PARSER, TOLERANCE, parse_answer, same_value

NUMERIC_TOL = TOLERANCE
"""Numeric answers within this distance are the same answer (ReFT compares answers
with ``abs(pred - gold) <= 1e-2``), so "18" and "18.0" vote together."""


def candidate(pred: str | None, task: str = "numeric", parser: str = DEFAULT_PARSER):
    """The value of an answer that may be voted for or reranked, else None: it parses, and
    for task mc it is one letter (the release's ``sampling.py`` and ``train_reward_model.py``
    both drop the others)."""
    value = parse_answer(pred, task, parser)
    if value is None or (task == "mc" and len(value) != 1):  # type: ignore[arg-type]
        return None
    return value


def majority_vote(preds: list[str | None], task: str = "numeric",
                  parser: str = DEFAULT_PARSER) -> str | None:
    """The most common answer among ``preds``, as first written; None when none voted.

    Votes go to parsed values, not strings: each answer text is read with ``parser``
    (``reft.answers.parse_answer``, as the reward and top-1 read it), so under "lenient"
    ``"18"``, ``"18.0"``, ``"$18"`` and ``"18 dollars"`` are one vote each for 18, and
    ``"(C)"`` and ``"c"`` for c. A number joins the first group whose first value is within
    ``NUMERIC_TOL``; letters group when equal (case was already dropped). ``None`` and
    texts that do not parse do not vote; for task mc neither does a value longer than one
    character (release parser: ``"(c)"``), as in the release's sampling.py.

    Ties go to the group seen first: the release takes ``Counter.most_common(1)``, whose
    order among equal counts is insertion order (sampling.py, lines 184-198). The
    release groups floats by exact equality; here the tolerance groups ``18`` and
    ``18.004`` too.
    """
    groups: list[list] = []  # [value, first answer as written, votes], in order of appearance
    for pred in preds:
        value = candidate(pred, task, parser)
        if value is None:
            continue
        for group in groups:
            if same_value(group[0], value, task):
                group[2] += 1
                break
        else:
            groups.append([value, pred, 1])
    best: list | None = None
    for group in groups:
        if best is None or group[2] > best[2]:  # strict: ties keep the earlier group
            best = group
    return None if best is None else best[1]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al., 2021).

    1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) so that
    no large binomial coefficients are formed.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def rerank_pick(scores: list[float], valid: list[bool] | None = None) -> int | None:
    """Index of the highest score among the ``valid`` samples (all without it); ties go to
    the first, NaN scores never win; None when no sample is valid.

    Valid means the sample gave an answer (``candidate``): the release's
    ``train_reward_model.py`` (``evaluate_rerank``) ranks only samples with a prediction
    value, and a question without one counts as wrong.
    """
    if not scores:
        raise ValueError("rerank_pick needs at least one score")
    if valid is not None and len(valid) != len(scores):
        raise ValueError(f"{len(valid)} validity flags for {len(scores)} scores")
    best = None
    for i, score in enumerate(scores):
        if valid is not None and not valid[i]:
            continue
        if best is None or score > scores[best] or (math.isnan(scores[best]) and not math.isnan(score)):
            best = i
    return best


def _fraction(values: list[bool | None]) -> float | None:
    """Share of True over all questions (None counts as wrong); None if nothing was computed."""
    if all(v is None for v in values):
        return None
    return sum(1 for v in values if v) / len(values)


def summarize(per_question: list[dict]) -> dict:
    """Aggregate per-question records into accuracies in [0, 1].

    Each record may hold ``greedy_correct``, ``sample_correct`` (one bool per sample),
    ``vote_correct`` and ``rerank_correct``. A metric is left out when no record has a
    value for it; otherwise a missing/None value counts as wrong and the denominator
    is all ``n`` questions. ``k`` is the number of samples per question (the smallest,
    if they differ), and ``pass@k`` averages the unbiased estimator with that ``k``.
    Returns ``{"n", "top1", "vote@k", "pass@k", "rerank@k", "k"}`` (computed keys only).
    """
    n = len(per_question)
    out: dict = {"n": n}
    if n == 0:
        return out
    for key, field in (("top1", "greedy_correct"), ("vote@k", "vote_correct")):
        value = _fraction([q.get(field) for q in per_question])
        if value is not None:
            out[key] = value
    samples = [list(q.get("sample_correct") or []) for q in per_question]
    sizes = [len(s) for s in samples if s]
    if sizes:
        k = min(sizes)
        out["pass@k"] = sum(pass_at_k(len(s), sum(map(bool, s)), k) if s else 0.0
                            for s in samples) / n
    value = _fraction([q.get("rerank_correct") for q in per_question])
    if value is not None:
        out["rerank@k"] = value
    if sizes:
        out["k"] = k
    return out
