"""Data sets by name (``reft.data.fetch``), against a local HTTP server, never the network.

The server serves the real files in ../shared/data under the URL paths the module
asks for: the ReFT release's files under ``$REFT_DATA_ENDPOINT/{commit}/data/...``,
and GSM8K Parquet files (made here from ../shared/data/gsm8k/*.jsonl) under the
hub's ``$HF_ENDPOINT/datasets/openai/gsm8k/resolve/{revision}/...``, with the
``ETag``/``X-Repo-Commit`` headers ``huggingface_hub`` needs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time
from pathlib import Path

import pytest

from reft.data import fetch, load_examples
from reft.errors import UserError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SHARED_COPIES = {
    # release path -> its copy in ../shared/data
    "data/gsm8k_test_set.json": "gsm8k/reft_test_set.json",
    "data/svamp_nl.json": "svamp/svamp_nl.json",
    "data/svamp_python_sdp.json": "svamp/svamp_python_sdp.json",
    "data/svamp_test_set.json": "svamp/svamp_test_set.json",
    "data/mathqa_test_set.json": "mathqa/mathqa_test_set.json",
    "data/mathqa-numeric_test_set.json": "mathqa/mathqa-numeric_test_set.json",
}
RELEASE_PREFIX = "/mwp_ReFT"


@pytest.fixture
def server(file_server):
    """The local file server (``tests.fixtures.file_server``), empty."""
    return file_server


@pytest.fixture
def env(server, tmp_path, monkeypatch):
    """HF_HOME in tmp, both endpoints on the local server, online; the release files routed."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(fetch.ENDPOINT_ENV, server.url + RELEASE_PREFIX)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    for path, copy in SHARED_COPIES.items():
        server.routes[_release_path(path)] = (SHARED / copy, {})
    return server


def _release_path(path: str) -> str:
    return f"{RELEASE_PREFIX}/{fetch.RELEASE_COMMIT}/{path}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _cached_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "hf"
    return [p for p in root.rglob("*") if p.is_file() or p.is_symlink()] if root.exists() else []


# -- the pinned table -------------------------------------------------------------------


def test_pinned_table_matches_the_shared_copies():
    """Each release entry's sha256, size and row count are those of the byte-identical copy."""
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED}")
    release = [e for e in fetch.NAMES.values() if e.source == "release" and e.sha256]
    assert {e.path for e in release} == set(SHARED_COPIES)
    for item in release:
        copy = SHARED / SHARED_COPIES[item.path]
        assert (fetch.sha256_file(copy), copy.stat().st_size) == (item.sha256, item.size), item
        assert len(json.loads(copy.read_text(encoding="utf-8"))) == item.rows


def test_names_and_prefixes():
    assert fetch.known_names() == sorted(fetch.NAMES)
    assert all(fetch.is_name(n) for n in fetch.known_names())
    assert not fetch.is_name("openai/gsm8k:main") and not fetch.is_name("data/x.json")
    with pytest.raises(UserError, match=r"unknown data set name 'reft:nope'.*reft:svamp_test"):
        fetch.resolve("reft:nope")


# -- release files over plain HTTP --------------------------------------------------------


def test_download_once_with_the_real_table_then_cache(env, tmp_path):
    path = fetch.resolve("reft:svamp_test")
    want = tmp_path / "hf" / "reft" / "data" / fetch.RELEASE_COMMIT / "svamp_test_set.json"
    assert path == want
    assert path.read_bytes() == (SHARED / "svamp/svamp_test_set.json").read_bytes()
    assert env.requests == [("GET", _release_path("data/svamp_test_set.json"))]
    assert fetch.resolve("reft:svamp_test") == path
    assert len(env.requests) == 1  # the second call used the cache
    assert _cached_files(tmp_path) == [path]  # no temporary file left


def test_checksum_mismatch_leaves_nothing(env, tmp_path, monkeypatch):
    wrong = "0" * 64
    item = dataclasses.replace(fetch.NAMES["reft:svamp_test"], sha256=wrong)
    monkeypatch.setitem(fetch.NAMES, item.name, item)
    with pytest.raises(UserError) as info:
        fetch.resolve(item.name)
    msg = str(info.value)
    got = _sha256(SHARED / "svamp/svamp_test_set.json")
    url = env.url + _release_path("data/svamp_test_set.json")
    assert "\n" not in msg
    assert all(part in msg for part in ("reft:svamp_test", url, wrong, got)), msg
    assert _cached_files(tmp_path) == []


# the git blob id of svamp_test_set.json in the release's tree at RELEASE_COMMIT
# (`git ls-tree HEAD data/svamp_test_set.json`)
SVAMP_TEST_BLOB = "6e7879f27d3a2b5227742b208dfd012fba278230"


def test_git_blob_id_is_gits():
    if not SHARED.is_dir():
        pytest.skip(f"real data not found at {SHARED}")
    assert fetch.git_blob_id(SHARED / "svamp/svamp_test_set.json") == SVAMP_TEST_BLOB


def test_large_training_files_are_checked_by_blob_id(env, tmp_path, monkeypatch):
    """``reft:gsm8k_nl`` and the other large files have no sha256 but a git blob id: served
    bytes with that id are cached, others are refused and nothing is left behind."""
    assert fetch.NAMES["reft:gsm8k_nl"].git_blob and fetch.NAMES["reft:gsm8k_nl"].sha256 is None
    item = dataclasses.replace(fetch.NAMES["reft:gsm8k_nl"], git_blob=SVAMP_TEST_BLOB)
    monkeypatch.setitem(fetch.NAMES, item.name, item)
    env.routes[_release_path("data/gsm8k_nl.json")] = (SHARED / "svamp/svamp_test_set.json", {})
    path = fetch.resolve(item.name)
    assert path.read_bytes() == (SHARED / "svamp/svamp_test_set.json").read_bytes()
    path.unlink()
    monkeypatch.setitem(fetch.NAMES, item.name, dataclasses.replace(item, git_blob="1" * 40))
    with pytest.raises(UserError, match=r"expected git blob id 1{40}, got " + SVAMP_TEST_BLOB):
        fetch.resolve(item.name)
    assert not path.exists()


def test_served_file_differs_from_the_release(env, tmp_path):
    """The real table rejects bytes that are not the release's (svamp_nl served as svamp_test)."""
    env.routes[_release_path("data/svamp_test_set.json")] = (SHARED / "svamp/svamp_nl.json", {})
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch.resolve("reft:svamp_test")
    assert _cached_files(tmp_path) == []


@pytest.mark.parametrize("var", fetch.OFFLINE_ENVS)
def test_offline_uses_the_cache(env, monkeypatch, var):
    path = fetch.resolve("reft:mathqa_test")
    env.requests.clear()
    monkeypatch.setenv(var, "1")
    assert fetch.resolve("reft:mathqa_test") == path
    assert env.requests == []


@pytest.mark.parametrize("var", fetch.OFFLINE_ENVS)
def test_offline_without_cache_fails(env, monkeypatch, var, tmp_path):
    monkeypatch.setenv(var, "1")
    with pytest.raises(UserError, match=r"reft:mathqa_test: not in the cache .* offline") as info:
        fetch.resolve("reft:mathqa_test")
    assert "\n" not in str(info.value)
    assert env.requests == [] and _cached_files(tmp_path) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_server_down_names_the_url(env, monkeypatch, tmp_path):
    port = _closed_port()
    monkeypatch.setenv(fetch.ENDPOINT_ENV, f"http://127.0.0.1:{port}/x")
    with pytest.raises(UserError) as info:
        fetch.resolve("reft:svamp_test")
    url = f"http://127.0.0.1:{port}/x/{fetch.RELEASE_COMMIT}/data/svamp_test_set.json"
    assert str(info.value).startswith(f"reft:svamp_test: cannot download {url} (")
    assert "\n" not in str(info.value)
    assert _cached_files(tmp_path) == []


def test_http_error_names_the_url(env):
    del env.routes[_release_path("data/svamp_nl.json")]
    with pytest.raises(
        UserError, match=r"cannot download http://127\.0\.0\.1:\d+/.*svamp_nl\.json \(HTTP 404"
    ):
        fetch.resolve("reft:svamp_nl")


def test_load_examples_by_name(env):
    examples = load_examples("reft:svamp_test")
    assert len(examples) == 1000
    assert examples == load_examples(str(SHARED / "svamp/svamp_test_set.json"))
    programs = load_examples("reft:svamp_python_sdp", cot="python")
    assert len(programs) == 3043 and programs[0].cot.lstrip().startswith("def ")
    with pytest.raises(UserError, match="unknown data set name 'reft:svamp'"):
        load_examples("reft:svamp")


def test_get_and_run_get(env, tmp_path, capsys):
    out = tmp_path / "out"
    paths = fetch.run_get(["reft:svamp_test", "reft:gsm8k_test"], str(out))
    assert paths == [out / "svamp_test_set.json", out / "gsm8k_test_set.json"]
    assert paths[1].read_bytes() == (SHARED / "gsm8k/reft_test_set.json").read_bytes()
    assert capsys.readouterr().out.splitlines() == [
        f"reft:svamp_test: {paths[0]}",
        f"reft:gsm8k_test: {paths[1]}",
    ]
    assert fetch.get("reft:svamp_test") == fetch.resolve("reft:svamp_test")
    assert len(env.requests) == 2


def test_run_get_checks_every_name_first(env):
    with pytest.raises(UserError, match="unknown data set name 'reft:typo'"):
        fetch.run_get(["reft:svamp_test", "reft:typo"])
    with pytest.raises(UserError, match="no data set name given"):
        fetch.run_get([])
    assert env.requests == []


# -- GSM8K from the hub protocol ------------------------------------------------------------


def _hub_path(item: fetch.Entry) -> str:
    return f"/datasets/{fetch.GSM8K_REPO}/resolve/{fetch.GSM8K_REVISION}/{item.path}"


@pytest.fixture
def hub(env, tmp_path):
    """GSM8K test split as Parquet, routed where ``hf_hub_download`` asks; returns its path."""
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        pytest.skip("huggingface_hub was imported with HF_HUB_OFFLINE set")
    lines = (SHARED / "gsm8k/test.jsonl").read_text(encoding="utf-8").splitlines()
    table = pa.Table.from_pylist([json.loads(line) for line in lines if line.strip()])
    path = tmp_path / "served" / "test-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(table, path)
    headers = {"ETag": f'"{_sha256(path)}"', "X-Repo-Commit": fetch.GSM8K_REVISION}
    env.routes[_hub_path(fetch.NAMES["hf:gsm8k_test"])] = (path, headers)
    return path


def test_hub_download_once_then_cache(env, hub, tmp_path):
    path = fetch.resolve("hf:gsm8k_test")
    assert path.read_bytes() == hub.read_bytes()
    assert path.is_relative_to(tmp_path / "hf" / "hub")
    assert fetch.GSM8K_REVISION in path.parts
    route = _hub_path(fetch.NAMES["hf:gsm8k_test"])
    # huggingface_hub may also ask the endpoint for /api/... (its agent registry): not counted
    assert [r for r in env.requests if r[1].startswith("/datasets/")] == [
        ("HEAD", route),
        ("GET", route),
    ]
    env.requests.clear()
    assert fetch.resolve("hf:gsm8k_test") == path
    assert env.requests == []


def test_hub_file_loads_as_gsm8k(env, hub):
    examples = load_examples("hf:gsm8k_test")
    original = load_examples(str(SHARED / "gsm8k/test.jsonl"))
    assert len(examples) == 1319
    assert [(e.question, e.answer, e.cot) for e in examples] == [
        (e.question, e.answer, e.cot) for e in original
    ]


def test_hub_etag_mismatch_leaves_nothing(env, hub, tmp_path):
    wrong = "1" * 64
    route = _hub_path(fetch.NAMES["hf:gsm8k_test"])
    env.routes[route] = (hub, {"ETag": f'"{wrong}"', "X-Repo-Commit": fetch.GSM8K_REVISION})
    with pytest.raises(UserError) as info:
        fetch.resolve("hf:gsm8k_test")
    msg = str(info.value)
    assert "\n" not in msg
    assert all(part in msg for part in ("hf:gsm8k_test", env.url + route, wrong, _sha256(hub)))
    hub_cache = tmp_path / "hf" / "hub"
    assert not [p for p in hub_cache.rglob("*.parquet")]
    assert not [p for p in hub_cache.rglob("blobs/*")]


def test_hub_pinned_sha256_is_checked(env, hub, monkeypatch):
    item = dataclasses.replace(fetch.NAMES["hf:gsm8k_test"], sha256="2" * 64)
    monkeypatch.setitem(fetch.NAMES, item.name, item)
    with pytest.raises(UserError, match="expected sha256 2{64}, got " + _sha256(hub)):
        fetch.resolve(item.name)


def test_hub_offline(env, hub, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match=r"hf:gsm8k_test: not in the hub cache .* offline"):
        fetch.resolve("hf:gsm8k_test")
    assert env.requests == []
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    path = fetch.resolve("hf:gsm8k_test")
    env.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch.resolve("hf:gsm8k_test") == path
    assert env.requests == []


def test_hub_down_fails_fast_naming_the_url(env, hub, monkeypatch, tmp_path):
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}" + _hub_path(fetch.NAMES["hf:gsm8k_test"])
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        fetch.resolve("hf:gsm8k_test")
    assert time.monotonic() - start < fetch.HUB_CHECK_TIMEOUT_S + 5  # not the hub's retries
    assert str(info.value).startswith(f"hf:gsm8k_test: cannot download {url} (")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "hf").rglob("*.parquet"))
