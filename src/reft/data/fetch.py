"""Data sets by name: ``reft:svamp_test``, ``hf:gsm8k_train``, ...

Two sources, both pinned:

- ``reft:*``: JSON files of the ReFT release (``lqtrung1998/mwp_ReFT`` on GitHub,
  Apache-2.0) at commit ``RELEASE_COMMIT``, downloaded with ``urllib`` from
  ``{REFT_DATA_ENDPOINT or RELEASE_BASE_URL}/{commit}/{path}`` and checked against the
  sha256 in ``NAMES``. They are cached as ``$HF_HOME/reft/data/{commit}/{file}``; a
  file is written to a temporary name and moved into place only once its hash matches.
- ``hf:*``: GSM8K's Parquet files from the Hugging Face hub (``openai/gsm8k``, config
  ``main``, MIT) at revision ``GSM8K_REVISION``, through ``huggingface_hub`` (which
  honours ``HF_ENDPOINT`` and caches under ``$HF_HOME/hub``). The file's sha256 is
  checked against the pinned one when ``NAMES`` has it, else against the hub's LFS
  ETag (which is the sha256 of an LFS file); a mismatch removes it from the cache.

With ``HF_HUB_OFFLINE=1`` or ``HF_DATASETS_OFFLINE=1`` only the cache is used. Every
failure (unknown name, network error, checksum mismatch, offline and not cached) is
a one-line ``UserError``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reft.errors import UserError

RELEASE_REPO = "lqtrung1998/mwp_ReFT"
RELEASE_COMMIT = "bdc844e02e5c783d4361d7777f4ad486e7e116da"
RELEASE_BASE_URL = f"https://raw.githubusercontent.com/{RELEASE_REPO}"
ENDPOINT_ENV = "REFT_DATA_ENDPOINT"
"""Overrides ``RELEASE_BASE_URL`` (a mirror, or a local server in tests)."""
GSM8K_REPO = "openai/gsm8k"
GSM8K_REVISION = "cc7b047b6e5bb11b4f1af84efc572db110a51b3c"
OFFLINE_ENVS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
PREFIXES = ("reft:", "hf:")
TIMEOUT_S = 60.0
HUB_CHECK_TIMEOUT_S = 5.0
CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    """One named file: where it comes from, its pinned hash and what it holds."""

    name: str
    source: str
    """``"release"`` (plain URL in the ReFT repository) or ``"hub"`` (``openai/gsm8k``)."""
    path: str
    """Path in the repository: ``data/svamp_test_set.json``, ``main/test-00000-of-00001.parquet``."""
    sha256: str | None
    size: int | None
    rows: int | None
    out_name: str
    """File name used by ``get(name, out)``."""
    licence: str
    git_blob: str | None = None
    """Git's blob id of the file (SHA-1 of ``blob <size>\\0`` + the bytes): the check for the
    release's large training files, whose sha256 was not pinned."""


def _release(name: str, file: str, sha256: str, size: int, rows: int) -> Entry:
    return Entry(f"reft:{name}", "release", f"data/{file}", sha256, size, rows, file, "Apache-2.0")


def _hub(split: str, rows: int) -> Entry:
    path = f"main/{split}-00000-of-00001.parquet"
    return Entry(
        f"hf:gsm8k_{split}", "hub", path, None, None, rows, f"gsm8k_{split}.parquet", "MIT"
    )


_ENTRIES = (
    _release("gsm8k_test", "gsm8k_test_set.json",
             "0f2e17554946d235d2c0cdf9343bb9d3319007bba9596e0665d4f8b341f57016", 425309, 1319),
    _release("svamp_nl", "svamp_nl.json",
             "12e9ee172f08987112244dc95a03877353874b24ff3b8481eab675123b8fdd9d", 1881012, 3076),
    _release("svamp_python_sdp", "svamp_python_sdp.json",
             "09936759f652750064b1cb0dc81bce893f0b3e4a21e81d63d5cf738e0a379c3c", 1849934, 3043),
    _release("svamp_test", "svamp_test_set.json",
             "baba23c85982adad6b7f6a9d6c6cf3b82c4135364a5ac36b8447add90f783d85", 250243, 1000),
    _release("mathqa_test", "mathqa_test_set.json",
             "0bcd2eaceeb419e6d9ce55aa20f064e92f3ce9fcf7725bfc5a0bf320769cd8bc", 503496, 1605),
    _release("mathqa-numeric_test", "mathqa-numeric_test_set.json",
             "7106aa5810115db4d2767a87753fa549fb870e69a517136b5f690c434072f421", 433111, 1605),
    _hub("train", 7473),
    _hub("test", 1319),
)  # fmt: skip
_BLOBS = {  # the release's training files over 4 MiB, checked by their git blob id
    "gsm8k_nl": "deb398325d6e8f1f984ad993dd5c4de7444c1e33",
    "gsm8k_python_sdp": "f1b5c9bce340a249333831b7dc63a78b74a646a4",
    "mathqa_nl": "3b7af65bad55c86a4873cc8dd86261cdb8cff4f2",
    "mathqa_python_sdp": "188c079ee89e55b65311cf23e1ef72b0c3bf3d68",
    "mathqa-numeric_nl": "a53a8a6f041efc5e7d724222bf6472f231b36bce",
    "mathqa-numeric_python_sdp": "587adb5c00e836bffd4c5452668f64fdb3fef5f2",
}
NAMES: dict[str, Entry] = {e.name: e for e in _ENTRIES} | {
    f"reft:{n}": Entry(f"reft:{n}", "release", f"data/{n}.json", None, None, None, f"{n}.json",
                       "Apache-2.0", git_blob=blob) for n, blob in _BLOBS.items()}
"""Every known name. The release's large training files (``gsm8k_nl``, ...) are checked by
the git blob id in the release's tree at ``RELEASE_COMMIT`` (their bytes were not at hand to
take a sha256)."""


def known_names() -> list[str]:
    """The known names, sorted."""
    return sorted(NAMES)


def is_name(source: str) -> bool:
    """Whether ``source`` is meant as a data set name (``reft:...`` or ``hf:...``)."""
    return source.startswith(PREFIXES)


def entry(name: str) -> Entry:
    """The entry for ``name``; an unknown name is a ``UserError`` listing the known ones."""
    try:
        return NAMES[name]
    except KeyError:
        raise UserError(
            f"unknown data set name {name!r}; known names: {', '.join(known_names())}"
        ) from None


def offline() -> bool:
    """Offline mode: ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set to 1/true/yes/on."""
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS
    )


def hf_home() -> Path:
    """``$HF_HOME`` as now set, else huggingface_hub's default (``~/.cache/huggingface``)."""
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def cache_path(item: Entry) -> Path:
    """Where a release file is cached: ``$HF_HOME/reft/data/{commit}/{file}``."""
    return hf_home() / "reft" / "data" / RELEASE_COMMIT / Path(item.path).name


def release_url(item: Entry) -> str:
    """The download URL of a release file (``REFT_DATA_ENDPOINT`` replaces the base)."""
    base = os.environ.get(ENDPOINT_ENV) or RELEASE_BASE_URL
    return f"{base.rstrip('/')}/{RELEASE_COMMIT}/{item.path}"


def resolve(name: str) -> Path:
    """The cached file of ``name``, downloaded and checked first if it is not cached."""
    item = entry(name)
    if item.source == "hub":
        return _resolve_hub(item)
    dest = cache_path(item)
    if dest.is_file():
        return dest
    url = release_url(item)
    if offline():
        raise UserError(
            f"{name}: not in the cache ({dest}) and offline mode is on "
            f"({' or '.join(OFFLINE_ENVS)}); fetch it once with network access "
            f"(reft data get {name})"
        )
    _download(item, url, dest)
    return dest


def _download(item: Entry, url: str, dest: Path) -> None:
    """Download ``url`` into ``dest`` atomically; ``dest`` appears only if the hash matches."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".incomplete", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            got = _stream(item.name, url, f)
        if item.sha256 is not None and got != item.sha256:
            raise UserError(_mismatch(item.name, url, item.sha256, got))
        if item.git_blob is not None and (blob := git_blob_id(tmp)) != item.git_blob:
            raise UserError(_mismatch(item.name, url, item.git_blob, blob, "git blob id"))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
        if not dest.exists():
            with contextlib.suppress(OSError):
                dest.parent.rmdir()  # only if empty: leave nothing behind


def _mismatch(name: str, url: str, expected: str, got: str, kind: str = "sha256") -> str:
    return (
        f"{name}: checksum mismatch for {url}: expected {kind} {expected}, got {got}; "
        "nothing was cached"
    )


def git_blob_id(path: Path) -> str:
    """Git's object id of the file's bytes (``git hash-object``)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())  # noqa: S324 (git's id)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stream(name: str, url: str, out: BinaryIO) -> str:
    """Copy ``url`` into the open file ``out``; return the sha256 of what was read."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            small = total is not None and total < PROGRESS_MIN_BYTES
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=name,
                leave=False,
                disable=True if small else None,
                file=sys.stderr,
            ) as bar:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        raise UserError(f"{name}: cannot download {url} (HTTP {e.code} {e.reason})") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(f"{name}: cannot download {url} ({_one_line(reason)})") from None
    return digest.hexdigest()


def _one_line(reason: object) -> str:
    lines = str(reason).strip().splitlines()
    return (lines[0] if lines else type(reason).__name__)[:300]


def hub_url(item: Entry) -> str:
    """The hub URL ``huggingface_hub`` asks for (under ``HF_ENDPOINT`` when set)."""
    from huggingface_hub import hf_hub_url

    return hf_hub_url(
        GSM8K_REPO, item.path, repo_type="dataset", revision=GSM8K_REVISION, endpoint=_endpoint()
    )


def _endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _hub_cache() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub")


def _resolve_hub(item: Entry) -> Path:
    """Download (or find in the hub cache) a GSM8K Parquet file; check its sha256."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    url = hub_url(item)
    # HF_HUB_OFFLINE as read when huggingface_hub was imported counts too: it refuses requests
    is_offline = offline() or constants.HF_HUB_OFFLINE
    if not is_offline:
        _check_reachable(item.name, item.path, url)
    try:
        path = Path(
            hf_hub_download(
                GSM8K_REPO,
                item.path,
                repo_type="dataset",
                revision=GSM8K_REVISION,
                cache_dir=_hub_cache(),
                endpoint=_endpoint(),
                local_files_only=is_offline,
            )
        )
    except LocalEntryNotFoundError as e:
        if is_offline:
            raise UserError(
                f"{item.name}: not in the hub cache ({_hub_cache()}) and offline mode is on "
                f"({' or '.join(OFFLINE_ENVS)}); fetch it once with network access "
                f"(reft data get {item.name})"
            ) from None
        raise UserError(f"{item.name}: cannot download {url} ({_one_line(e)})") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", "?")
        raise UserError(f"{item.name}: cannot download {url} (HTTP {status})") from None
    except _hub_errors() as e:
        raise UserError(f"{item.name}: cannot download {url} ({_one_line(e)})") from None
    _check_hub_file(item, url, path)
    return path


def _check_reachable(name: str, path: str, url: str) -> None:
    """Fail in seconds, not after huggingface_hub's ~25 s of retries, when the hub is down.

    Skipped when the pinned file is already in the hub cache (no request is needed).
    """
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(
        GSM8K_REPO, path, cache_dir=_hub_cache(), revision=GSM8K_REVISION, repo_type="dataset"
    )
    if isinstance(cached, str):
        return
    try:
        request = urllib.request.Request(_endpoint(), method="HEAD")
        urllib.request.urlopen(request, timeout=HUB_CHECK_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the server answered: it is reachable
    except (OSError, ValueError) as e:
        reason = _one_line(getattr(e, "reason", None) or e)
        raise UserError(f"{name}: cannot download {url} ({reason})") from None


def _hub_errors() -> tuple[type[BaseException], ...]:
    """Network errors ``huggingface_hub`` may let through (its HTTP client's, by version)."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    for module in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(importlib.import_module(module).HTTPError)
    return tuple(errors)


def _check_hub_file(item: Entry, url: str, path: Path) -> None:
    """Check a hub file against the pinned sha256, else its blob name (the LFS sha256)."""
    blob = path.resolve()
    expected = item.sha256 or (blob.name if _SHA256.fullmatch(blob.name) else None)
    if expected is None:
        return
    got = sha256_file(blob)
    if got != expected:
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
        raise UserError(_mismatch(item.name, url, expected, got))


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def get(name: str, out: Path | None = None) -> Path:
    """``resolve(name)``, then, when ``out`` is given, a copy in that directory."""
    src = resolve(name)
    if out is None:
        return src
    out = Path(out).expanduser()
    dest = out / entry(name).out_name
    tmp = dest.with_name(f".{dest.name}.incomplete")
    try:
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise UserError(f"{name}: cannot write into {out} ({e.strerror or e})") from None
    return dest


def run_get(names: list[str], out: str | None = None) -> list[Path]:
    """``reft data get NAME... [--out DIR]``: fetch each name, print ``NAME: PATH`` lines.

    All names are checked before anything is downloaded.
    """
    if not names:
        raise UserError(f"no data set name given; known names: {', '.join(known_names())}")
    for name in names:
        entry(name)
    paths = []
    for name in names:
        path = get(name, Path(out) if out else None)
        print(f"{name}: {path}")
        paths.append(path)
    return paths
