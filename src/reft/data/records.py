"""The one record type every data source is turned into, and the GSM8K solution splitter.

``split_solution`` lives here, not in ``reft.data.gsm8k``, because both the GSM8K
reader and the generic column-mapped reader (``reft.data.hf``) need it, and
``gsm8k`` already imports ``hf``: keeping it in this leaf module avoids an import cycle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")
GSM8K_FINAL = "####"
"""The marker before the gold answer on the last line of a GSM8K solution."""


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


def split_solution(solution: str) -> tuple[str, str]:
    """``"Natalia sold 48/2 = <<48/2=24>>24 clips...\\n#### 72"`` -> (CoT, ``"72"``).

    The CoT is the text before the last ``####`` without the ``<<...>>`` calculator
    notes; the gold is the text after it without thousands commas.
    """
    head, _, gold = solution.rpartition(GSM8K_FINAL)
    cot = _CALCULATOR_NOTE.sub("", head).strip()
    return cot, gold.strip().replace(",", "")
