"""Frozen config dataclasses <-> YAML files, ``--key value`` flags and run directories.

Precedence: dataclass defaults < YAML file (``--config``) < command-line flags.
The help text of each flag is the docstring written under the field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reft.config.checks import Checked, ConfigError, flag, merged_table, validate
from reft.errors import UserError

C = TypeVar("C")
_UNLOCATED = ("config", "command line")
"""``make_config`` sources that add nothing to a message naming the flag."""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (``x: int = 1`` then ``\"\"\"doc\"\"\"``).
    Cached: reading a class's source is slow, and the CLI asks once per flag."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _base_type(tp: Any) -> tuple[type, bool]:
    """(underlying type, optional?) of an annotation such as ``float | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(cls: type, name: str, value: Any, source: str) -> Any:
    tp, optional = _base_type(_hints(cls)[name])
    if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise UserError(f"{source}: '{name}' may not be empty")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if tp in (int, float, str):
            return tp(value)
    except (TypeError, ValueError):
        raise UserError(
            f"{source}: '{name}' must be {tp.__name__}, got {value!r}"
        ) from None
    return value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f": line {mark.line + 1}" if mark else ""
        raise UserError(f"{p}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of keys to values at the top level")
    return data


def groups(cls: type) -> dict[str, type]:
    """The nested settings groups of ``cls``: field name -> its dataclass (``sampling``)."""
    return {f.name: tp for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if dataclasses.is_dataclass(tp := _base_type(_hints(cls)[f.name])[0])}


def leaves(cls: type) -> dict[str, type]:
    """Every setting a flag or YAML key can name: field name -> the dataclass declaring it,
    a nested group's fields included under their own names."""
    nested = groups(cls)
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in nested:
            out.update({g.name: nested[f.name] for g in dataclasses.fields(nested[f.name])})
        else:
            out[f.name] = cls
    return out


def make_config(cls: type[C], values: dict[str, Any], source: str = "config",
                flags: Collection[str] = ()) -> C:
    """Build ``cls`` from a dict, rejecting unknown keys with a clear message.

    Keys are field names (``-`` or ``_``); a nested group's fields may be given by their
    own names (``max_new_tokens``) or as a mapping under the group (``sampling: {...}``).
    Every value is checked (``reft.config.validate``: ranges, choices, the template's
    ``{question}``) as the config is made; a bad one is a one-line UserError naming its flag,
    after ``source`` (a YAML file, a pipeline section) unless the value is one of ``flags``,
    the names given on the command line (their flag says where they came from).
    """
    nested, known = groups(cls), leaves(cls)
    clean: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {g: {} for g in nested}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name in nested and isinstance(value, dict | type(None)):
            parts[name].update(value or {})
        elif name in nested and dataclasses.is_dataclass(value):
            parts[name].update(dataclasses.asdict(value))
        elif name not in known:
            raise UserError(f"{source}: unknown key '{key}' for {cls.__name__} "
                            f"(known: {', '.join(sorted(known))})")
        elif known[name] is cls:
            clean[name] = _coerce(cls, name, value, "command line" if name in flags else source)
        else:
            parts[next(g for g, gc in nested.items() if gc is known[name])][name] = value
    try:
        for g, gvalues in parts.items():
            clean[g] = _group(cls, g, nested[g], gvalues, source, flags)
        cfg = cls(**clean)
        if not isinstance(cfg, Checked):  # e.g. the pipeline's sections: checked here instead
            validate(cfg)
    except TypeError as e:  # a required field is missing
        raise UserError(f"{source}: {e}") from None
    except ConfigError as e:
        if e.field in flags or source in _UNLOCATED or str(e).startswith(f"{source}: "):
            raise
        raise ConfigError(e.field, f"{source}: {e}") from None
    return cfg


def _group(cls: type, name: str, gcls: type, values: dict, source: str, flags: Collection[str]):
    """The nested group ``name`` of ``cls``; where ``cls`` bounds one of its fields more
    tightly (``BOUNDS["sampling.temperature"]``), a value out of the group's range gets the
    tighter rule's message (the one that says what will do)."""
    try:
        return make_config(gcls, values, source, flags)
    except ConfigError as e:
        tighter = merged_table(cls, "BOUNDS").get(f"{name}.{e.field}")
        if tighter is None:
            raise
        value = values.get(e.field, values.get(e.field.replace("_", "-")))
        raise ConfigError(e.field, f"{flag(e.field)}: must be {tighter.describe()}; got {value!r}") from None


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config`` and one ``--field-name`` flag per setting (nested groups' included)."""
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML file of settings; flags override it"
    )
    for name, owner in leaves(cls).items():
        f = next(x for x in dataclasses.fields(owner) if x.name == name)
        tp, _ = _base_type(_hints(owner)[name])
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = field_docs(owner).get(name, "")
        if f.default is dataclasses.MISSING:
            help_ += " (required)"
        elif default is not None:
            help_ += f" (default: {default})"
        kw: dict[str, Any] = {"dest": name, "default": None, "help": help_}
        if tp is bool:
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, **kw)
            continue
        kw["metavar"] = tp.__name__.upper() if tp in (int, float) else "STR"
        allowed = merged_table(owner, "CHOICES").get(name)
        if allowed is not None:
            kw["choices"] = list(allowed)
            kw.pop("metavar")
        parser.add_argument(flag(name), **kw)


def config_from_args(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """Merge defaults, ``--config`` YAML and explicit flags into a frozen config (checked:
    a bad value is a one-line UserError, raised before anything else happens)."""
    values: dict[str, Any] = {}
    source = "command line"
    if getattr(args, "config", None):
        values.update(read_yaml(args.config))
        source = str(args.config)
    given: set[str] = set(fixed)
    nested = groups(cls)
    for name, owner in leaves(cls).items():
        v = getattr(args, name, None)
        if v is not None:
            values.pop(name.replace("_", "-"), None)  # a flag overrides either YAML spelling
            if owner is not cls:  # ... and the same key under the group's mapping
                group = next(g for g, gc in nested.items() if gc is owner)
                if isinstance(values.get(group), dict):
                    values[group] = {k: x for k, x in values[group].items()
                                     if k.replace("-", "_") != name}
            values[name] = v
            given.add(name)
    values.update(fixed)
    return make_config(cls, values, source, flags=given)


def convert(cfg: Any, cls: type[C], **changes: Any) -> C:
    """A ``cls`` holding the settings of ``cfg`` that ``cls`` also has, with ``changes``
    (a stage run by another: offline self-training's sampling and SFT)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    shared = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in names}
    return cls(**{**shared, **changes})


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config, derived properties included under their names."""
    out = dataclasses.asdict(cfg)
    for name, member in inspect.getmembers(type(cfg)):
        if isinstance(member, property) and not name.startswith("_"):
            out[name] = getattr(cfg, name)
    return out


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config (fields and derived values) as YAML and JSON-safe."""
    Path(path).write_text(yaml.safe_dump(json.loads(json.dumps(to_dict(cfg))), sort_keys=False))
