"""Checking settings: ranges, choices and required text, declared beside each config.

A config class declares ``CHOICES`` (field -> allowed values; a registry's live keys work),
``BOUNDS`` (field -> :class:`Range`) and ``CONTAINS`` (field -> text the value must hold);
``validate`` checks them all, once, when the config is made (:class:`Checked`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from reft.errors import UserError


class ConfigError(UserError):
    """A setting outside its range or choices: ``--flag-name: must be ...; got X``.

    ``field`` names the setting, so a caller that knows where the value came from (a YAML
    file, a pipeline section) can say so.
    """

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field.rpartition(".")[2]


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric setting. ``low``/``high``: None = unbounded; ``open_low``/``open_high``:
    the bound itself is excluded. An unset optional (None) always passes; NaN never does,
    nor infinity unless ``inf_ok``. ``why`` is added to the message in brackets."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    inf_ok: bool = False
    why: str = ""

    def admits(self, x: float) -> bool:
        if math.isnan(x) or (math.isinf(x) and not self.inf_ok):
            return False
        if self.low is not None and (x <= self.low if self.open_low else x < self.low):
            return False
        return self.high is None or (x < self.high if self.open_high else x <= self.high)

    def describe(self) -> str:
        lo, hi = (None if b is None else format(b, "g") for b in (self.low, self.high))
        if lo is not None and hi is not None:
            if not (self.open_low or self.open_high):
                text = f"between {lo} and {hi}"
            else:
                text = f"{'>' if self.open_low else '>='} {lo} and {'<' if self.open_high else '<='} {hi}"
        elif lo is not None:
            text = f"{'>' if self.open_low else '>='} {lo}"
        elif hi is not None:
            text = f"{'<' if self.open_high else '<='} {hi}"
        else:
            text = "a finite number" if not self.inf_ok else "a number"
        return f"{text} ({self.why})" if self.why else text


COUNT = Range(1)
"""An integer count that must be at least 1 (sizes, epochs, intervals used as a modulus)."""
COUNT0 = Range(0)
"""A count where 0 means "off" or "all" (see the flag's help)."""
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, open_low=True)
FRACTION = Range(0, 1)
"""A probability or ratio in [0, 1]."""
MIN_LENGTH = Range(16, why="room for a prompt and its answer")
TOKEN_ID = Range(0)


def _field_kind(tp: Any) -> str:
    """'int', 'float' or '' for a dataclass field's (string) annotation such as ``float | None``."""
    names = {t.strip() for t in str(getattr(tp, "__name__", tp)).split("|")} - {"None"}
    return next(iter(names)) if len(names) == 1 and names <= {"int", "float"} else ""


def merged_table(cls: type, table: str) -> dict[str, Any]:
    """A class attribute table (CHOICES, BOUNDS, CONTAINS) merged over the MRO, most derived last,
    so a class sees its bases' entries without spelling them out."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get(table, {}))
    return out


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size`` (``sampling.temperature`` -> ``--temperature``: the
    fields of a nested settings group are flags of their own)."""
    return "--" + name.rpartition(".")[2].replace("_", "-")


def _lookup(cfg: Any, name: str) -> tuple[Any, Any]:
    """(value, dataclass field) of ``name``; a dotted name reaches into a nested group."""
    head, _, rest = name.partition(".")
    if rest:
        return _lookup(getattr(cfg, head), rest)
    return getattr(cfg, name), next(f for f in dataclasses.fields(cfg) if f.name == name)


def validate(cfg: Any) -> None:
    """Check a config's settings against its class tables; ConfigError (a UserError) on the first
    one out of bounds, naming its flag.

    * ``CHOICES``: field -> allowed values;
    * ``BOUNDS``: field -> :class:`Range` (int fields must also be integers);
    * ``CONTAINS``: field -> text the value must contain (``{question}`` in ``--template``).

    Every config class here runs it once, from ``__post_init__`` (see :class:`Checked`), so
    each command, YAML file and Python caller gets it; ``reft.configio.make_config`` runs it
    for other dataclasses that declare the tables (the pipeline's sections).
    """
    cls = type(cfg)
    for name, allowed in merged_table(cls, "CHOICES").items():
        value, _ = _lookup(cfg, name)
        if value not in allowed:
            raise ConfigError(name, f"{flag(name)}: must be one of "
                                    f"{', '.join(map(str, allowed))}; got {value!r}")
    for name, rng in merged_table(cls, "BOUNDS").items():
        value, field = _lookup(cfg, name)
        if value is None and ("None" in str(field.type) or "Optional" in str(field.type)):
            continue
        integer = _field_kind(field.type) == "int"
        number = isinstance(value, numbers.Integral if integer else numbers.Real)
        if isinstance(value, bool) or not number or not rng.admits(float(value)):
            what = "an integer " if integer else ""
            raise ConfigError(name, f"{flag(name)}: must be {what}{rng.describe()}; got {value!r}")
    for name, part in merged_table(cls, "CONTAINS").items():
        value, _ = _lookup(cfg, name)
        if not isinstance(value, str) or part not in value:
            raise ConfigError(name, f"{flag(name)}: must contain {part}; got {value!r}")


class Checked:
    """Base of the config roots: a dataclass built from it is validated once, on construction
    (``__init__``, ``dataclasses.replace``)."""

    def __post_init__(self) -> None:
        validate(self)
