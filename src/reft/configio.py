"""Frozen config dataclasses <-> YAML files, ``--key value`` flags and run directories.

Precedence: dataclass defaults < YAML file (``--config``) < command-line flags.
The help text of each flag is the docstring written under the field.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar

import yaml

from reft.config import Checked, ConfigError, validate
from reft.errors import UserError

C = TypeVar("C")
_UNLOCATED = ("config", "command line")
"""``make_config`` sources that add nothing to a message naming the flag."""


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under dataclass fields (``x: int = 1`` then ``\"\"\"doc\"\"\"``)."""
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


def make_config(cls: type[C], values: dict[str, Any], source: str = "config",
                flags: Collection[str] = ()) -> C:
    """Build ``cls`` from a dict, rejecting unknown keys with a clear message.

    Every value is checked (``reft.config.validate``: ranges, choices, the template's
    ``{question}``) as the config is made; a bad one is a one-line UserError naming its flag,
    after ``source`` (a YAML file, a pipeline section) unless the value is one of ``flags``,
    the names given on the command line (their flag says where they came from).
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    clean: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in names:
            raise UserError(
                f"{source}: unknown key '{key}' for {cls.__name__} "
                f"(known: {', '.join(sorted(names))})"
            )
        clean[name] = _coerce(cls, name, value, "command line" if name in flags else source)
    try:
        cfg = cls(**clean)
        if not isinstance(cfg, Checked):  # e.g. the pipeline's sections: checked here instead
            validate(cfg)
    except TypeError as e:  # a required field is missing
        raise UserError(f"{source}: {e}") from None
    except ConfigError as e:
        if e.field in flags or source in _UNLOCATED:
            raise
        raise ConfigError(e.field, f"{source}: {e}") from None
    return cfg


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add ``--config`` and one ``--field-name`` flag per dataclass field."""
    docs = field_docs(cls)
    choices = getattr(cls, "CHOICES", {})
    parser.add_argument(
        "--config", metavar="FILE.yaml", help="YAML file of settings; flags override it"
    )
    for f in dataclasses.fields(cls):
        tp, _ = _base_type(_hints(cls)[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = docs.get(f.name, "")
        if f.default is dataclasses.MISSING:
            help_ += " (required)"
        elif default is not None:
            help_ += f" (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": help_}
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        else:
            kw["metavar"] = tp.__name__.upper() if tp in (int, float) else "STR"
            if f.name in choices:
                kw["choices"] = list(choices[f.name])
                kw.pop("metavar")
            parser.add_argument(flag, **kw)


def config_from_args(cls: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """Merge defaults, ``--config`` YAML and explicit flags into a frozen config (checked:
    a bad value is a one-line UserError, raised before anything else happens)."""
    values: dict[str, Any] = {}
    source = "command line"
    if getattr(args, "config", None):
        values.update(read_yaml(args.config))
        source = str(args.config)
    given: set[str] = set(fixed)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        v = getattr(args, f.name, None)
        if v is not None:
            values.pop(f.name.replace("_", "-"), None)  # a flag overrides either YAML spelling
            values[f.name] = v
            given.add(f.name)
    values.update(fixed)
    return make_config(cls, values, source, flags=given)


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
