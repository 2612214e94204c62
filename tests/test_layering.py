"""The package reads bottom to top: no import cycles, no upward imports, small files.

Each top-level module or package of ``reft`` has a layer; a module may import from its own
layer and below, never above, and no two modules may import each other in a circle (at
package or file level). Imports inside functions count too: a lazy import is still a
dependency. Layers, bottom to top (docs/architecture.md explains each):
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [
    {"_version", "errors", "algorithms"},   # pure: nothing of reft above
    {"answers", "sandbox"},                 # reading answers, running programs
    {"config", "configio"},                 # settings
    {"runtime"},                            # files, processes, precision, checkpoints, metrics
    {"data", "models", "rewards"},          # building blocks
    {"rollout"},                            # prompt -> samples -> scores
    {"eval"},                               # measurements
    {"training"},                           # the loops
    {"pipeline", "demo", "report"},         # protocols built from the above
    {"cli", "__main__", "reft"},            # parsing and dispatch; the package's API
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 60


def _modules() -> dict[str, Path]:
    mods = {}
    for path in (SRC / "reft").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(module: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The reft modules ``module`` imports (the module itself for ``from pkg import name``
    when ``name`` is a submodule, else the package)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "reft" or name.startswith("reft."):
                for alias in node.names:
                    sub = f"{name}.{alias.name}"
                    found.add(sub if sub in mods else name)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name == "reft" or a.name.startswith("reft.")}
    found.discard(module)
    return found


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "reft"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(m, p, mods) if i in mods} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_top_level_module_has_a_layer():
    tops = {_top(m) for m in _modules()}
    assert tops <= RANK.keys(), f"no layer for {sorted(tops - RANK.keys())}: add it to LAYERS"


def test_no_upward_imports():
    graph = _graph()
    upward = sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs
                    if RANK[_top(b)] > RANK[_top(a)])
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_file_cycles():
    assert not _cycles(_graph())


def test_no_package_cycles():
    graph = defaultdict(set)
    for a, bs in _graph().items():
        graph[_top(a)] |= {_top(b) for b in bs if _top(b) != _top(a)}
    assert not _cycles(dict(graph))


def test_the_checks_catch_what_they_look_for():
    """The cycle finder and the layer table on a made-up graph (so the tests above can fail)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert RANK["training"] > RANK["eval"] > RANK["rollout"] > RANK["data"] > RANK["answers"]


@pytest.mark.parametrize("path", sorted((SRC / "reft").rglob("*.py")), ids=lambda p: p.name)
def test_sizes(path):
    """No file over 400 lines, no function over 60 (STYLE.md)."""
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path}: {len(text.splitlines())} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path}: {', '.join(long)}"
