"""Reward shaping, GAE, GRPO and RLOO, and the estimator registry, against hand-worked numbers."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from reft.algorithms import (
    ADVANTAGE_ESTIMATORS,
    gae,
    get_estimator,
    grpo_advantages,
    register_estimator,
    rloo_advantages,
    shape_rewards,
)

# --- shape_rewards ---------------------------------------------------------------------------

# Row 0: response at 0..2, right padding at 3. Row 1: a prompt token at 0, response at 1..2,
# padding at 3. The 9s sit where the mask is 0 and must not show up.
SCORES = torch.tensor([1.0, 0.1])
KL = torch.tensor([[0.2, -0.1, 0.4, 9.0], [9.0, 0.3, 0.1, 9.0]])
KL_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])


def test_shape_rewards_puts_the_score_on_the_last_response_token():
    # kl_coef 0.5: row 0 gets -0.5·[0.2, -0.1, 0.4] = [-0.1, 0.05, -0.2], + score 1 on index 2 → 0.8
    #              row 1 gets -0.5·[0.3, 0.1] = [-0.15, -0.05] at 1..2, + score 0.1 on index 2 → 0.05
    expected = torch.tensor([[-0.1, 0.05, 0.8, 0.0], [0.0, -0.15, 0.05, 0.0]])
    assert_close(shape_rewards(SCORES, KL, KL_MASK, kl_coef=0.5), expected)


def test_shape_rewards_without_kl_is_the_score_alone():
    expected = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.1, 0.0]])
    assert_close(shape_rewards(SCORES, KL, KL_MASK.bool(), kl_coef=0.0), expected)


def test_shape_rewards_row_without_response_gets_nothing():
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # row 0: the only token is index 0: -0.5·0.2 + 1 = 0.9
    expected = torch.tensor([[0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert_close(shape_rewards(SCORES, KL, mask, kl_coef=0.5), expected)


def test_shape_rewards_ignores_padding(pad):
    out = shape_rewards(SCORES, pad(KL), pad(KL_MASK, 0), kl_coef=0.5)
    assert_close(pad.real(out), shape_rewards(SCORES, KL, KL_MASK, kl_coef=0.5))
    assert torch.equal(pad.outside(out), torch.zeros(2, 5))


# --- gae ----------------------------------------------------------------------------------------


def test_gae_single_terminal_reward():
    # γ = 1, λ = 0.95, V = 0: δ = r, so A_2 = 1, A_1 = 0.95·1 = 0.95, A_0 = 0.95·0.95 = 0.9025
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.zeros(1, 3)
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=0.95)
    assert_close(advantages, torch.tensor([[0.9025, 0.95, 1.0]]))
    assert_close(returns, torch.tensor([[0.9025, 0.95, 1.0]]))  # + V = 0


def test_gae_with_values_and_discount():
    # γ = 0.9, λ = 0.5 (γλ = 0.45), r = [0, 0, 1], V = [0.5, 0.4, 0.2], value after the end 0:
    # t=2: δ = 1 + 0.9·0 - 0.2 = 0.8;      A = 0.8
    # t=1: δ = 0 + 0.9·0.2 - 0.4 = -0.22;  A = -0.22 + 0.45·0.8 = 0.14
    # t=0: δ = 0 + 0.9·0.4 - 0.5 = -0.14;  A = -0.14 + 0.45·0.14 = -0.077
    # returns = A + V = [0.423, 0.54, 1.0]; check R_1 as a λ-return: 0.9·(0.5·0.2 + 0.5·1) = 0.54
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.2]])
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.5)
    assert_close(advantages, torch.tensor([[-0.077, 0.14, 0.8]]))
    assert_close(returns, torch.tensor([[0.423, 0.54, 1.0]]))


def test_gae_with_lambda_one_is_monte_carlo():
    # γ = λ = 1: returns are the sums of the rewards to go, [0.9, 0.8, 1.0]; A = returns - 0.5
    rewards = torch.tensor([[0.1, -0.2, 1.0]])
    values = torch.full((1, 3), 0.5)
    advantages, returns = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert_close(returns, torch.tensor([[0.9, 0.8, 1.0]]))
    assert_close(advantages, torch.tensor([[0.4, 0.3, 0.5]]))


def test_gae_rows_are_independent_and_stop_at_their_last_token():
    # Row 1 ends after 2 tokens: the value after its last token is 0, whatever sits at index 2.
    # γ = 1, λ = 0.95: A_1 = 1, A_0 = 0.95
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])
    values = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    assert_close(advantages, torch.tensor([[0.9025, 0.95, 1.0], [0.95, 1.0, 0.0]]))
    assert_close(returns, advantages)


def test_gae_skips_masked_positions_inside_the_response():
    # A hole at index 1 is passed over: the result on tokens 0, 2 is GAE on a 2-token response.
    rewards = torch.tensor([[0.0, 3.0, 1.0]])
    values = torch.tensor([[0.5, 4.0, 0.2]])
    advantages, _ = gae(rewards, values, torch.tensor([[1, 0, 1]]), gamma=0.9, lam=0.5)
    dense, _ = gae(rewards[:, [0, 2]], values[:, [0, 2]], torch.ones(1, 2), gamma=0.9, lam=0.5)
    assert_close(advantages[:, [0, 2]], dense)
    assert advantages[0, 1] == 0


def test_gae_ignores_padding(pad):
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])
    values = torch.tensor([[0.5, 0.4, 0.2], [0.1, 0.3, 7.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = gae(pad(rewards), pad(values), pad(mask, 0), gamma=0.9, lam=0.5)
    expected_adv, expected_ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    assert_close(pad.real(advantages), expected_adv)
    assert_close(pad.real(returns), expected_ret)
    assert torch.equal(pad.outside(advantages), torch.zeros(2, 5))
    assert torch.equal(pad.outside(returns), torch.zeros(2, 5))


# --- grpo and rloo --------------------------------------------------------------------------------

# One question, 4 samples: right, wrong, wrong-but-parsed (ReFT's 0.1), right.
GROUP = torch.tensor([1.0, 0.0, 0.1, 1.0])


def test_grpo_advantages():
    # mean = 2.1 / 4 = 0.525; deviations [0.475, -0.525, -0.425, 0.475];
    # squares 0.225625 + 0.275625 + 0.180625 + 0.225625 = 0.9075; unbiased var 0.3025, std 0.55
    # A = deviations / 0.55 = [0.8636, -0.9545, -0.7727, 0.8636]
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
    expected = torch.tensor(
        [
            [0.8636, 0.8636, 0.0],
            [-0.9545, 0.0, 0.0],
            [-0.7727, -0.7727, -0.7727],
            [0.8636, 0.8636, 0.0],
        ]
    )
    assert_close(grpo_advantages(GROUP, 4, mask), expected, atol=1e-4, rtol=0)


def test_rloo_advantages():
    # baseline = mean of the other three:
    # s0: 1 - (0 + 0.1 + 1)/3 = 1 - 0.3667 = 0.6333;  s1: 0 - (1 + 0.1 + 1)/3 = -0.7
    # s2: 0.1 - (1 + 0 + 1)/3 = -0.5667;             s3 = s0 = 0.6333
    # (= 4/3 · (s - 0.525): 4/3 · 0.475 = 0.6333)
    expected = torch.tensor([[0.6333], [-0.7], [-0.5667], [0.6333]])
    assert_close(rloo_advantages(GROUP, 4, torch.ones(4, 1)), expected, atol=1e-4, rtol=0)


def test_groups_are_consecutive_rows_and_a_tied_group_gets_zero():
    scores = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    mask = torch.ones(8, 2)
    # group 1: mean 0.5, deviations ±0.5, unbiased var 4·0.25/3 = 1/3, std 0.5774 → ±0.8660
    grpo = grpo_advantages(scores, 4, mask)
    assert_close(grpo[:4, 0], torch.tensor([0.8660, 0.8660, -0.8660, -0.8660]), atol=1e-4, rtol=0)
    assert torch.equal(grpo[4:], torch.zeros(4, 2))  # all wrong: nothing to learn, and no nan
    # rloo group 1: 1 - (1 + 0 + 0)/3 = 0.6667, 0 - 2/3 = -0.6667
    rloo = rloo_advantages(scores, 4, mask)
    assert_close(rloo[:4, 0], torch.tensor([2 / 3, 2 / 3, -2 / 3, -2 / 3]))
    assert torch.equal(rloo[4:], torch.zeros(4, 2))


@pytest.mark.parametrize("fn", [grpo_advantages, rloo_advantages])
def test_value_free_advantages_ignore_padding(fn, pad):
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    out = fn(GROUP, 4, pad(mask, 0))
    assert_close(pad.real(out), fn(GROUP, 4, mask))
    assert torch.equal(pad.outside(out), torch.zeros(4, 5))


@pytest.mark.parametrize("fn", [grpo_advantages, rloo_advantages])
def test_value_free_advantages_reject_bad_groups(fn):
    with pytest.raises(ValueError, match="at least 2"):
        fn(GROUP, 1, torch.ones(4, 1))
    with pytest.raises(ValueError, match="groups of 3"):
        fn(GROUP, 3, torch.ones(4, 1))


# --- the registry -------------------------------------------------------------------------------


def _inputs(**overrides):
    """The same keyword arguments for every estimator: one group of 4, T = 3."""
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    kwargs = {
        "scores": GROUP,
        "mask": mask,
        "kl": torch.full((4, 3), 0.1),
        "values": torch.full((4, 3), 0.2),
        "kl_coef": 0.5,
        "gamma": 1.0,
        "lam": 0.95,
        "group_size": 4,
    }
    return kwargs | overrides


def test_registry_has_the_three_estimators_with_one_signature():
    assert set(ADVANTAGE_ESTIMATORS) >= {"gae", "grpo", "rloo"}
    for name in ("gae", "grpo", "rloo"):
        advantages, returns = get_estimator(name)(**_inputs())
        assert advantages.shape == (4, 3)
        assert (returns is not None) == (name == "gae")


def test_unknown_estimator_names_the_known_ones():
    with pytest.raises(ValueError, match="gae, grpo, rloo"):
        get_estimator("ppo")


def test_gae_estimator_is_shape_rewards_then_gae():
    kw = _inputs()
    rewards = shape_rewards(kw["scores"], kw["kl"], kw["mask"], kw["kl_coef"])
    expected = gae(rewards, kw["values"], kw["mask"], kw["gamma"], kw["lam"])
    advantages, returns = get_estimator("gae")(**kw)
    assert_close(advantages, expected[0])
    assert_close(returns, expected[1])


def test_gae_estimator_needs_values():
    with pytest.raises(ValueError, match="value head"):
        get_estimator("gae")(**_inputs(values=None))


@pytest.mark.parametrize("name", ["gae", "grpo", "rloo"])
def test_no_kl_is_the_same_as_a_zero_kl_coef(name):
    # kl_mode=loss: the estimator sees kl=None
    estimator = get_estimator(name)
    assert_close(estimator(**_inputs(kl=None))[0], estimator(**_inputs(kl_coef=0.0))[0])


def test_value_free_estimators_penalise_the_sequence_kl():
    # kl_coef 0.5, sequence KL [0, 0, 0.2, 2] → rewards [1 - 0, 0 - 0, 0.1 - 0.1, 1 - 1] = [1, 0, 0, 0]
    # grpo: mean 0.25, deviations [0.75, -0.25, -0.25, -0.25], squares sum 0.75, var 0.25, std 0.5
    #       → [1.5, -0.5, -0.5, -0.5]
    # rloo: [1 - 0, 0 - 1/3, 0 - 1/3, 0 - 1/3] = [1, -0.3333, -0.3333, -0.3333]
    kl = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.1, 0.1], [1.5, 0.5]])
    kw = _inputs(kl=kl, mask=torch.ones(4, 2), values=None)
    grpo, _ = get_estimator("grpo")(**kw)
    assert_close(grpo[:, 0], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-4, rtol=0)
    rloo, _ = get_estimator("rloo")(**kw)
    assert_close(rloo[:, 1], torch.tensor([1.0, -1 / 3, -1 / 3, -1 / 3]))


def test_register_estimator_adds_by_name():
    @register_estimator("_test_zero")
    def zero(*, scores, mask, **_):
        return torch.zeros_like(mask, dtype=scores.dtype), None

    try:
        assert get_estimator("_test_zero") is zero
    finally:
        del ADVANTAGE_ESTIMATORS["_test_zero"]
