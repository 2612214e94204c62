"""Runs print their own progress, not transformers': no "Writing model shards" bar on every
save, no "Loading weights" bar on every load, and no FutureWarning about ``past_key_values``
from reft's forward passes. transformers' own switch is left as it was."""

from __future__ import annotations

import warnings

import pytest
from transformers.utils import logging as hf_logging

from tests.fixtures import reft_main

BARS = ("Writing model shards", "Loading weights")


@pytest.fixture
def bars_on():
    """transformers' progress bars on, as in a fresh process; the setting restored after."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging._tqdm_active = True
    yield
    hf_logging._tqdm_active = was


def _no_bars(err: str) -> None:
    assert not [b for b in BARS if b in err], err[-3000:]
    assert hf_logging.is_progress_bar_enabled()  # turned off only around reft's saves and loads


def test_loading_a_model_shows_no_bar(tiny_model_dir, capfd, bars_on):
    from reft.models.loading import load_model
    from reft.models.value_head import PolicyWithValueHead

    load_model(tiny_model_dir, dtype="float32")
    PolicyWithValueHead.from_pretrained(tiny_model_dir, dtype="float32")
    _no_bars(capfd.readouterr().err)


def test_model_init_shows_no_bar(tmp_path, tiny_data, capfd, bars_on):
    rc, _, err = reft_main(capfd, "model", "init", "--out", tmp_path / "m", "--data",
                           tiny_data.train, "--vocab-size", 300, "--hidden-size", 16, "--layers", 1,
                           "--heads", 2)
    assert rc == 0, err
    _no_bars(err)


def test_sft_run_shows_no_bar(tmp_path, tiny_model_dir, tiny_data, capfd, bars_on):
    """Loads the model, saves a checkpoint per epoch and the final model."""
    rc, _, err = reft_main(capfd, "sft", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--epochs", 1, "--batch-size", 8, "--out", tmp_path / "run")
    assert rc == 0, err
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    _no_bars(err)


def test_ppo_step_shows_no_bar_and_no_past_key_values_warning(tmp_path, tiny_model_dir, tiny_data,
                                                              capfd, bars_on):
    """One step with a separate critic: policy, reference and critic loaded; sampling, the
    policy, reference and value forward passes; a checkpoint, the final policy and critic."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        rc, _, err = reft_main(capfd, "ppo", "--model", tiny_model_dir, "--train-file",
                               tiny_data.train, "--critic", "separate", "--max-steps", 1,
                               "--save-every", 1, "--rollout-batch-size", 2, "--mini-batch-size", 2,
                               "--max-new-tokens", 8, "--mixed-precision", "no",
                               "--out", tmp_path / "run")
    assert rc == 0, err
    assert (tmp_path / "run" / "final" / "critic" / "config.json").is_file()
    _no_bars(err)
    assert "past_key_values" not in err
    cache = [f"{w.filename}:{w.lineno}: {w.message}" for w in seen
             if "past_key_values" in str(w.message)]
    assert not cache, cache
