"""algorithms/ is pure tensor math: it may import torch and the standard library, not the rest of reft."""

from __future__ import annotations

import ast
from pathlib import Path

import reft.algorithms

ALLOWED = {"__future__", "collections", "importlib", "typing", "torch"}
PACKAGE = Path(reft.algorithms.__file__).parent


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module or "")
    return names


def test_algorithms_import_nothing_else_from_reft():
    for path in PACKAGE.glob("*.py"):
        outside = {n for n in _imports(path) if n.split(".")[0] == "reft"}
        assert not outside, f"{path.name} imports {outside}"


def test_algorithms_import_only_torch_and_stdlib():
    for path in PACKAGE.glob("*.py"):
        third_party = {n.split(".")[0] for n in _imports(path)} - ALLOWED
        assert not third_party, f"{path.name} imports {third_party}"
