"""``--report-to``: metrics.jsonl always; TensorBoard events only for ``tensorboard``; a
Weights & Biases run for ``wandb`` with the same keys at the same steps, resumed by id."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from reft.errors import UserError
from reft.runtime.metrics import WANDB_ID_FILE, MetricsLogger
from tests.fixtures import read_metrics, reft_main

ROWS = [(1, {"loss/nll": 2.0, "optim/lr": 1e-5}), (2, {"loss/nll": 1.5, "optim/lr": 1e-5,
                                                       "eval/top1": float("nan")})]
HAS_WANDB = importlib.util.find_spec("wandb") is not None


@dataclasses.dataclass(frozen=True)
class _Cfg:
    lr: float = 1e-5
    out: Path = Path("runs/x")


class FakeWandb(ModuleType):
    """Records ``init`` arguments and every ``run.log`` / ``run.finish`` call."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[tuple[dict, int]] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return SimpleNamespace(log=lambda data, step: self.logged.append((dict(data), step)),
                               finish=self._finish)

    def _finish(self) -> None:
        self.finished += 1


@pytest.fixture
def fake_wandb(monkeypatch) -> FakeWandb:
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    return fake


def _log_rows(logger: MetricsLogger, rows=ROWS) -> None:
    for step, metrics in rows:
        logger.log(step, metrics, epoch=1)
    logger.close()


def test_none_writes_metrics_jsonl_but_no_tb(tmp_path):
    _log_rows(MetricsLogger(tmp_path, report_to="none"))
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    assert not (tmp_path / "tb").exists()


def test_tensorboard_is_the_default(tmp_path):
    _log_rows(MetricsLogger(tmp_path))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_unknown_backend_is_user_error(tmp_path):
    with pytest.raises(UserError, match="--report-to"):
        MetricsLogger(tmp_path, report_to="mlflow")


def test_wandb_gets_the_same_keys_and_steps(tmp_path, fake_wandb):
    run_dir = tmp_path / "my_run"
    run_dir.mkdir()
    _log_rows(MetricsLogger(run_dir, report_to="wandb", config=_Cfg()))
    (init,) = fake_wandb.inits
    assert init["name"] == "my_run" and init["config"] == {"lr": 1e-5, "out": "runs/x"}
    assert init["id"] == (run_dir / WANDB_ID_FILE).read_text().strip()
    assert not (run_dir / "tb").exists() and fake_wandb.finished == 1
    rows = read_metrics(run_dir)
    # every finite number of each metrics.jsonl row but "step", at that row's step
    expected = [({k: v for k, v in r.items() if k != "step" and v == v}, r["step"]) for r in rows]
    assert fake_wandb.logged == expected
    assert fake_wandb.logged[1][0].keys() == {"epoch", "loss/nll", "optim/lr"}


def test_wandb_resume_appends_to_the_stored_run_id(tmp_path, fake_wandb):
    _log_rows(MetricsLogger(tmp_path, report_to="wandb"), ROWS[:1])
    first_id = fake_wandb.inits[0]["id"]
    _log_rows(MetricsLogger(tmp_path, report_to="wandb", resume_step=1), ROWS[1:])
    assert fake_wandb.inits[1]["id"] == first_id and fake_wandb.inits[1]["resume"] == "allow"
    assert [step for _, step in fake_wandb.logged] == [1, 2]
    # a fresh (not resumed) run in the same folder gets a new W&B run
    _log_rows(MetricsLogger(tmp_path, report_to="wandb"), ROWS[:1])
    assert fake_wandb.inits[2]["id"] != first_id


def test_wandb_not_logged_off_the_main_process(tmp_path, fake_wandb):
    _log_rows(MetricsLogger(tmp_path, enabled=False, report_to="wandb"))
    assert fake_wandb.inits == [] and not (tmp_path / "metrics.jsonl").exists()


def test_wandb_missing_is_one_line_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(UserError, match=r"pip install 'reft\[wandb\]'") as err:
        MetricsLogger(tmp_path, report_to="wandb")
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not HAS_WANDB, reason="wandb not installed (pip install 'reft[wandb]'); "
                    "the fake-module tests above cover the calls")
def test_real_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    (tmp_path / "wandb_dir").mkdir()
    monkeypatch.setenv("WANDB_SILENT", "true")
    _log_rows(MetricsLogger(tmp_path / "run", report_to="wandb", config=_Cfg()))
    run_id = (tmp_path / "run" / WANDB_ID_FILE).read_text().strip()
    assert list((tmp_path / "wandb_dir").rglob(f"*{run_id}*"))


def _sft(capsys, tmp_path, tiny_model_dir, tiny_data, report_to: str) -> Path:
    out = tmp_path / f"run_{report_to}"
    rc, _, err = reft_main(capsys, "sft", "--model", tiny_model_dir, "--train-file",
                           tiny_data.train, "--out", out, "--epochs", 1, "--batch-size", 4,
                           "--log-every", 1, "--mixed-precision", "no",
                           "--report-to", report_to)
    assert rc == 0, err[-3000:]
    return out


def test_sft_report_to_none_writes_no_tb(capsys, tmp_path, tiny_model_dir, tiny_data):
    out = _sft(capsys, tmp_path, tiny_model_dir, tiny_data, "none")
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert not (out / "tb").exists()


def test_sft_report_to_wandb_logs_the_metrics_rows(capsys, tmp_path, tiny_model_dir, tiny_data,
                                                   fake_wandb):
    out = _sft(capsys, tmp_path, tiny_model_dir, tiny_data, "wandb")
    rows = read_metrics(out)
    assert [(set(d), s) for d, s in fake_wandb.logged] == [(set(r) - {"step"}, r["step"])
                                                           for r in rows]
    (init,) = fake_wandb.inits
    assert init["name"] == out.name and init["config"]["report_to"] == "wandb"
    assert init["config"]["epochs"] == 1 and fake_wandb.finished == 1
    assert not (out / "tb").exists()
    json.dumps(init["config"])  # plain values only
