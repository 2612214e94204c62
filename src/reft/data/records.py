"""The one record type every data source is turned into."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A math word problem.

    ``answer`` is the gold answer as given by the source (e.g. ``"18"``, ``"3.5"``,
    ``"c"``); ``cot`` is the reference chain of thought (N-CoT text without the final
    answer sentence, or a P-CoT program), or None for test sets.
    """

    id: str
    question: str
    answer: str
    cot: str | None = None
