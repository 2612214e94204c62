"""``quiet_saves``: no "Writing model shards" bar from save_pretrained, the setting restored."""

from __future__ import annotations

from transformers.utils import logging as hf_logging

from reft.models.loading import quiet_saves
from tests.tiny import tiny_model_and_tokenizer


def test_save_pretrained_writes_no_progress_bar(tmp_path, capfd):
    model, _ = tiny_model_and_tokenizer()
    before = hf_logging.is_progress_bar_enabled()
    with quiet_saves():
        model.save_pretrained(tmp_path / "m")
    assert hf_logging.is_progress_bar_enabled() == before
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "it/s" not in err, err
    assert (tmp_path / "m" / "config.json").is_file()


def test_restored_after_an_error_and_usable_as_a_decorator():
    before = hf_logging.is_progress_bar_enabled()

    @quiet_saves()
    def fails():
        assert not hf_logging.is_progress_bar_enabled()
        raise OSError("disk full")

    try:
        fails()
    except OSError:
        pass
    assert hf_logging.is_progress_bar_enabled() == before
