"""What a program's run comes back as, and the two halves of getting it back safely.

``reduce_value`` runs in the program's child, under its limits: it turns whatever ``solution()``
returned into a float or a short string (or refuses). ``parse_reply`` runs in the executor and
again in the trainer: it reads that small JSON message without trusting any of it, so a hostile
child can at most choose its own result, never run code or smuggle objects into the trainer.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

MAX_ABS = 1e15  # answers beyond this are treated as garbage, not numbers
MAX_STR = 100  # a string result is cut to this many characters
MAX_REPLY = 4096  # bytes; a longer reply from a child is malformed
MAX_ERROR = 80

# "kind" or "kind: detail"; exception names are the only free-form part
_ERROR = re.compile(
    r"(timeout|memory|syntax|no-solution|bad-result|too-long|setup"
    r"|killed(: [A-Za-z0-9 ]{1,40})?|exit: -?\d{1,4}|exception: [A-Za-z_][A-Za-z0-9_.]{0,60})"
)
_PLAIN = re.compile(r"[A-Za-z0-9_.: -]*")  # needs no JSON escaping


@dataclass(frozen=True)
class ProgramResult:
    """One program's outcome: ``value`` is the answer (float or short string) or None; ``error``
    is None or a short reason: ``timeout``, ``memory``, ``syntax``, ``exception: ZeroDivisionError``,
    ``killed: SIGSEGV``, ``exit: 3``, ``bad-result``, ``no-solution``, ``too-long``, ``setup``."""

    value: float | str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def kind(self) -> str | None:
        """The error without its detail: ``exception``, ``killed``, ``timeout``, ... or None."""
        return None if self.error is None else self.error.split(":")[0]


BAD = ProgramResult(None, "bad-result")


def _number(value: object) -> float | None:
    """A finite, not-absurd float for exactly-typed numbers; None for anything else."""
    kind = type(value)
    if kind is int and value.bit_length() > 60:  # 10**5000 must not reach float()
        return None
    if kind in (int, bool, float):
        number = float(value)
    elif kind in (Fraction, Decimal) or _is_library_number(value):
        try:
            number = float(value)  # may call library code: fine, we are in the child
        except Exception:
            return None
        if type(number) is not float:
            return None
    else:
        return None
    return number if math.isfinite(number) and abs(number) < MAX_ABS else None


def _is_library_number(value: object) -> bool:
    """A sympy or numpy number whose class comes from the library itself, not a subclass that
    the program wrote."""
    module = type(value).__module__ or ""
    sympy, numpy = sys.modules.get("sympy"), sys.modules.get("numpy")
    if sympy is not None and module.startswith("sympy.") and isinstance(value, sympy.Basic):
        return bool(getattr(value, "is_number", False))
    if numpy is not None and module == "numpy" and isinstance(value, numpy.generic):
        return value.dtype.kind in "biuf"
    return False


def reduce_value(value: object) -> ProgramResult:
    """What ``solution()`` returned, as a ``ProgramResult`` (called in the child)."""
    if type(value) is str:
        return ProgramResult(value[:MAX_STR])
    number = _number(value)
    return BAD if number is None else ProgramResult(number)


def encode_reply(result: ProgramResult) -> bytes:
    """One JSON line. Numbers and our own error words are written by hand: the JSON encoder's
    first use in a freshly forked child costs it some fifty page faults."""
    value, error = result.value, result.error
    if type(value) is str or (error is not None and not _PLAIN.fullmatch(error)):
        return (json.dumps({"v": value, "e": error}) + "\n").encode()
    v = "null" if value is None else repr(value)  # a finite float: valid JSON as it is
    e = "null" if error is None else f'"{error}"'
    return f'{{"v": {v}, "e": {e}}}\n'.encode()


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def check(value: object, error: object) -> ProgramResult:
    """Validate an untrusted (value, error) pair; anything off becomes ``bad-result``."""
    if error is not None:
        if type(error) is not str or len(error) > MAX_ERROR or not _ERROR.fullmatch(error):
            return BAD
        return ProgramResult(None, error)
    if type(value) is str and len(value) <= MAX_STR:
        # lone surrogates survive JSON but not printing: replace them
        return ProgramResult(value.encode("utf-8", "replace").decode("utf-8"))
    if type(value) is int and abs(value) < MAX_ABS:
        return ProgramResult(float(value))
    if type(value) is float and math.isfinite(value) and abs(value) < MAX_ABS:
        return ProgramResult(value)
    return BAD


def loads(data: bytes) -> dict | None:
    """A JSON object from untrusted bytes (size-capped, no NaN/Infinity), or None."""
    if len(data) > MAX_REPLY * 4:
        return None
    try:
        obj = json.loads(data, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    return obj if type(obj) is dict else None


def parse_reply(data: bytes) -> ProgramResult:
    """The child's reply (one JSON line) as a result; missing, oversized or malformed -> bad."""
    if len(data) > MAX_REPLY or not data.endswith(b"\n") or data.count(b"\n") != 1:
        return BAD
    obj = loads(data)
    if obj is None or set(obj) != {"v", "e"}:
        return BAD
    return check(obj["v"], obj["e"])
