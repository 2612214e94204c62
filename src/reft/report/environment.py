"""What built the report: package versions, the git commit of the reft source, hardware.

Run directories do not record the machine that trained them, so the footer describes the
machine and checkout that built the report (the same one when the pipeline writes it).
Every look-up is best effort: a missing package, git or GPU tool reads "unknown"/"none".
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from reft._version import __version__

PACKAGES = ("torch", "transformers")
TIMEOUT_S = 5


def _run(*cmd: str, cwd: Path | None = None) -> str | None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    """The commit of the checkout reft runs from (``+dirty`` with uncommitted changes to
    tracked files), or "unknown" when reft is not run from a git checkout of itself."""
    package = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None:
        return "unknown"
    top = _run("git", "rev-parse", "--show-toplevel", cwd=package)
    if top is None or (Path(top) / "src" / "reft").resolve() != package:
        return "unknown"  # an installed copy, or reft inside someone else's repository
    commit = _run("git", "rev-parse", "--short=12", "HEAD", cwd=package)
    if commit is None:
        return "unknown"
    dirty = _run("git", "status", "--porcelain", "--untracked-files=no", cwd=package)
    return f"{commit}+dirty" if dirty else commit


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> str:
    if shutil.which("nvidia-smi") is None:
        return "no GPU found"
    names = _run("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
    if not names:
        return "no GPU found"
    gpus = [n.strip() for n in names.splitlines() if n.strip()]
    counts = {name: gpus.count(name) for name in gpus}
    return ", ".join(f"{n} × {name}" for name, n in counts.items())


def hardware() -> str:
    mem = _memory_gib()
    parts = [f"{_cpu()} ({os.cpu_count() or '?'} cores)"]
    if mem is not None:
        parts.append(f"{mem:.0f} GiB RAM")
    parts.append(_gpus())
    return f"{', '.join(parts)}; {platform.system()} {platform.release()}, Python {platform.python_version()}"


def build_info() -> dict[str, str]:
    """Footer facts: ``reft``, ``torch``, ``transformers``, ``git``, ``hardware``."""
    info = {"reft": __version__}
    info.update({name: package_version(name) for name in PACKAGES})
    info["git"] = git_commit()
    info["hardware"] = hardware()
    return info
