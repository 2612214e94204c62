"""Accuracy metrics over per-question results: majority voting, pass@k, reranking.

Pure Python (no torch), so reports and tests can use it anywhere.
"""

from __future__ import annotations

import math

NUMERIC_TOL = 1e-2
"""Numeric answers within this distance are the same answer (ReFT compares answers
with ``abs(pred - gold) <= 1e-2``), so "18" and "18.0" vote together."""


def _as_number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _same(a: str, b: str, numeric: bool) -> bool:
    if numeric:
        x, y = _as_number(a), _as_number(b)
        if x is not None and y is not None:
            return abs(x - y) <= NUMERIC_TOL
    return a.strip() == b.strip()


def majority_vote(preds: list[str | None], numeric: bool = True) -> str | None:
    """The most common answer among ``preds``; None when no sample gave an answer.

    ``None`` entries (unanswered samples) do not vote. With ``numeric``, answers that
    parse as numbers join the first group whose first member is within ``NUMERIC_TOL``;
    other strings group by exact text (surrounding whitespace ignored). Ties go to
    the group seen first, and the group's first answer, as written, is returned.
    """
    groups: list[list] = []  # [first answer, votes], in order of first appearance
    for pred in preds:
        if pred is None:
            continue
        for group in groups:
            if _same(group[0], pred, numeric):
                group[1] += 1
                break
        else:
            groups.append([pred, 1])
    best: list | None = None
    for group in groups:
        if best is None or group[1] > best[1]:  # strict: ties keep the earlier group
            best = group
    return None if best is None else best[0]


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


def rerank_pick(scores: list[float]) -> int:
    """Index of the highest score; ties go to the first. NaN scores never win."""
    if not scores:
        raise ValueError("rerank_pick needs at least one score")
    best = 0
    for i, score in enumerate(scores):
        if score > scores[best] or (math.isnan(scores[best]) and not math.isnan(score)):
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
