"""Every metric key a loop can log is documented in docs/metrics.md, in one scheme."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("loss", "policy", "value", "reward", "response", "eval", "train", "data", "optim",
            "perf", "time")
KEY = re.compile(rf"^({'|'.join(FAMILIES)})/[a-z0-9_]+$")


def _documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z]+/[a-z0-9_]+)` \|", (ROOT / "docs/metrics.md").read_text(), re.M))


def _logged() -> set[str]:
    """String constants shaped like metric keys, and ``time/<phase>_s`` for every phase a
    loop names (``loop.phase("x")``, ``loop.record(x=...)``)."""
    keys = set()
    for path in (ROOT / "src/reft").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and KEY.match(node.value):
                keys.add(node.value)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr == "phase" and node.args and isinstance(node.args[0], ast.Constant):
                    keys.add(f"time/{node.args[0].value}_s")
                if node.func.attr == "record":
                    keys |= {f"time/{kw.arg}_s" for kw in node.keywords}
    return keys


def test_every_logged_key_is_documented():
    missing = _logged() - _documented()
    assert not missing, f"document these in docs/metrics.md: {sorted(missing)}"


def test_every_documented_key_is_logged():
    stale = _documented() - _logged()
    assert not stale, f"docs/metrics.md lists keys no loop logs: {sorted(stale)}"


def test_the_scan_finds_the_phases():
    assert {"time/sample_s", "time/update_s", "loss/policy", "eval/top1"} <= _logged()
