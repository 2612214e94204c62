"""``--loss-agg`` reaches every loss term of the PPO update (tier 3, one tiny step)."""

from __future__ import annotations

import inspect

import pytest

from tests.fixtures import reft_main

SMALL = ["--rollout-batch-size", 2, "--mini-batch-size", 2, "--max-new-tokens", 8,
         "--max-steps", 1, "--ppo-epochs", 1, "--mixed-precision", "no"]


@pytest.mark.slow
@pytest.mark.parametrize("flag, expected", [([], "seq-mean-token-mean"),
                                            (["--loss-agg", "token-mean"], "token-mean")])
def test_loss_agg_reaches_every_loss(flag, expected, tmp_path, tiny_model_dir, tiny_data, capsys,
                                     monkeypatch):
    import reft.training.ppo as ppo

    seen: dict[str, set] = {}

    def spy(name):
        real = getattr(ppo, name)

        def wrapped(*args, **kw):
            # what the caller passed, by position or by name; "unset" if it left the default
            bound = inspect.signature(real).bind(*args, **kw).arguments
            seen.setdefault(name, set()).add(bound.get("loss_agg", "unset"))
            return real(*args, **kw)

        monkeypatch.setattr(ppo, name, wrapped)

    for name in ("policy_loss", "value_loss", "kl_loss"):
        spy(name)
    rc, _, err = reft_main(capsys, "ppo", "--model", tiny_model_dir, "--train-file", tiny_data.train,
                           "--out", tmp_path / "run", "--kl-mode", "loss", *SMALL, *flag)
    assert rc == 0, err
    assert seen == {"policy_loss": {expected}, "value_loss": {expected}, "kl_loss": {expected}}


def test_unknown_loss_agg_is_a_usage_error(tmp_path, capsys):
    rc, _, err = reft_main(capsys, "ppo", "--model", tmp_path, "--train-file", tmp_path / "x",
                           "--loss-agg", "seq-mean")
    assert rc == 2
    assert "invalid choice: 'seq-mean' (choose from 'seq-mean-token-mean'" in err
