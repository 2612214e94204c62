"""Session fixtures for the tier-2/3 tests: a tiny Llama and a little synthetic data.

Both are built once per test session under pytest's temporary directory and never
written to by the tests (runs go to each test's own ``tmp_path``). Loaded through
``pytest_plugins`` in ``tests/conftest.py``; the helpers below are plain functions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

N_TRAIN, N_TEST = 8, 6


@dataclass(frozen=True)
class TinyData:
    """Synthetic GSM8K-style problems in ReFT JSON, both CoT styles (``*_py`` = P-CoT)."""

    train: Path
    test: Path
    train_py: Path
    test_py: Path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> TinyData:
    from reft.data.synthetic import generate, write_reft_json

    d = tmp_path_factory.mktemp("data")
    paths = {}
    for cot, suffix in (("nl", ""), ("python", "_py")):
        for split, n in (("train", N_TRAIN), ("test", N_TEST)):
            path = d / f"{split}{suffix}.json"
            write_reft_json(generate(n, seed=0, split=split, cot=cot), path, cot=cot)
            paths[f"{split}{suffix}"] = path
    return TinyData(**paths)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_data) -> Path:
    """A randomly initialised Llama (hidden 32, 2 layers, 2 heads) + BPE tokenizer trained
    on the tiny data's prompts and targets, saved as an HF model directory."""
    from reft.data.prompts import build_prompt, build_target
    from reft.data.synthetic import generate
    from reft.models.tiny import init_model

    texts = [build_prompt(e.question, cot) + build_target(e, cot)
             for cot in ("nl", "python")
             for split, n in (("train", N_TRAIN), ("test", N_TEST))
             for e in generate(n, seed=0, split=split, cot=cot)]
    out = tmp_path_factory.mktemp("models") / "tiny"
    init_model(out, texts=texts, vocab_size=320, hidden_size=32, layers=2, heads=2,
               max_positions=512)
    return out


def run_reft(*args: object, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m reft ARGS`` in a subprocess (the real entry point), output captured."""
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "reft", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def reft_main(capsys, *args: object) -> tuple[int, str, str]:
    """``reft ARGS`` in this process (same parser and error mapping, no interpreter start-up):
    (exit status, stdout, stderr)."""
    from reft.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors exit from inside the parser
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def error_lines(stderr: str) -> list[str]:
    """stderr without progress bars and library warnings: the lines reft itself printed."""
    return [ln for ln in stderr.splitlines() if ln.startswith("reft")]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln]


def finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def model_weights(model_dir: Path) -> dict:
    """The tensors of an HF model directory (single safetensors file, as tiny models are)."""
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def weights_changed(before: dict, after: dict) -> bool:
    import torch

    assert before.keys() == after.keys()
    return any(not torch.equal(before[k], after[k]) for k in before)


def assert_same_weights(a: dict, b: dict, atol: float = 1e-6) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), k


def tree_digest(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> content), to show a directory is untouched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def hand_vote(preds: list[str | None]) -> str | None:
    """Majority vote written out independently of ``reft.eval.metrics``: the answered
    prediction agreeing (numbers within 1e-2, else the same text) with the most others;
    ties go to the earliest. None when no sample answered."""
    def same(a: str, b: str) -> bool:
        try:
            return abs(float(a) - float(b)) <= 1e-2
        except ValueError:
            return a.strip() == b.strip()

    answered = [p for p in preds if p is not None]
    if not answered:
        return None
    votes = [sum(same(p, q) for q in answered) for p in answered]
    return answered[votes.index(max(votes))]


def metrics_from_predictions(records: list[dict], k: int) -> dict[str, float]:
    """top1, vote@k, pass@k (unbiased, Chen et al. 2021) and rerank@k recomputed by hand
    from the records a ``reft eval`` wrote to predictions.jsonl, trusting only each
    completion's own ``correct`` flag. Keys for sampled metrics only when samples exist."""
    n = len(records)
    out = {"top1": sum(r["correct"] for r in records) / n}
    if all("samples" in r for r in records):
        pass_k = vote = 0.0
        for r in records:
            preds = [s["pred"] for s in r["samples"]]
            m, c = len(r["samples"]), sum(s["correct"] for s in r["samples"])
            pass_k += 1 - math.comb(m - c, k) / math.comb(m, k)
            v = hand_vote(preds)
            # a sample's correctness depends only on its answer: the vote is right when a
            # sample giving that answer is
            vote += v is not None and any(s["correct"] for s in r["samples"] if s["pred"] == v)
        out["pass@k"], out["vote@k"] = pass_k / n, vote / n
    if all("rerank_scores" in r for r in records):
        # the highest-scored sample among those with an answer (the release's
        # evaluate_rerank); a question whose samples gave none counts as wrong
        right = 0
        for r in records:
            answered = [(s, x) for s, x in zip(r["rerank_scores"], r["samples"], strict=True)
                        if x["pred"] is not None]
            right += bool(answered) and max(answered, key=lambda p: p[0])[1]["correct"]
        out["rerank@k"] = right / n
    return out


class _FileHandler(BaseHTTPRequestHandler):
    """Answers GET and HEAD from the server's route table; records every request."""

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path))
        route = self.server.routes.get(urllib.parse.urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
            return
        file, headers = route
        data = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def file_server(shared_data):
    """A server on 127.0.0.1 (the stand-in for anything that downloads) with an empty route
    table (``routes[url_path] = (file, headers)``), the requests it got (``requests``) and
    its ``url``; skipped, as the files it serves are, without ../shared/data."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    srv.routes, srv.requests = {}, []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)
