"""reft.eval.metrics against numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from reft.eval.metrics import majority_vote, pass_at_k, rerank_pick, summarize

# --- majority_vote -------------------------------------------------------------------


def test_vote_plain_majority():
    assert majority_vote(["3", "5", "5", "7"]) == "5"


def test_vote_ignores_unanswered_samples():
    # None x3 would win if it voted; among answers "4" has 2 votes vs "9" 1
    assert majority_vote([None, "4", None, "9", "4", None]) == "4"


def test_vote_all_unanswered_is_none():
    assert majority_vote([None, None, None]) is None
    assert majority_vote([]) is None


def test_vote_tie_goes_to_first_seen():
    # "2" and "1" both have 2 votes; "2" appeared first
    assert majority_vote(["2", "1", "1", "2"]) == "2"
    assert majority_vote(["1", "2"]) == "1"


def test_vote_numeric_forms_vote_together():
    # "18" + "18.0" + "18.00" = 3 votes beat "20" x2; the first spelling is returned
    assert majority_vote(["20", "18", "18.0", "20", "18.00"]) == "18"


def test_vote_within_tolerance_groups_outside_does_not():
    # |18.005 - 18| = 0.005 <= 1e-2 -> same group (2 votes) beats "17" (1 vote)
    assert majority_vote(["17", "18", "18.005"]) == "18"
    # |18.5 - 18| = 0.5 > 1e-2 -> three singleton groups; tie -> first
    assert majority_vote(["17", "18", "18.5"]) == "17"


def test_vote_tolerance_is_against_group_first_member():
    # 1.0 groups with 1.008 (0.008) but 1.016 is 0.016 from 1.0 -> its own group.
    # groups: {1.0, 1.008}=2, {1.016}=1
    assert majority_vote(["1.0", "1.016", "1.008"]) == "1.0"


def test_vote_letters():
    assert majority_vote(["b", "a", "a"], task="mc") == "a"
    # numbers are no answer to a multiple-choice question: they do not vote
    assert majority_vote(["18", "18.0"], task="mc") is None


def test_vote_unparsable_answers_do_not_vote():
    # "x" is no number: 3 and 3.0 are the only votes
    assert majority_vote(["x", "3", "3.0", "x", "x"]) == "3"


def test_vote_over_values_not_strings():
    # lenient: "18", "18 dollars" and "$18" are 3 votes for 18 against 1 for 5 (raw strings
    # would be four singletons, and the tie would go to "5")
    assert majority_vote(["5", "18", "18 dollars", "$18"], parser="lenient") == "18"
    # default reads "18 dollars" and "$18" as no answer (float() fails): 1 vote each, tie -> "5"
    assert majority_vote(["5", "18", "18 dollars", "$18"]) == "5"


def test_vote_letters_ignore_case_and_brackets():
    # lenient: "(C)" and "c" are both c: 2 votes beat "b"; the first spelling is returned
    assert majority_vote(["b", "(C)", "c"], task="mc", parser="lenient") == "(C)"
    assert majority_vote(["b", "C", "c"], task="mc") == "C"


def test_vote_release_drops_mc_answers_longer_than_one_letter():
    # sampling.py votes only one-character MathQA answers: "(c)" x2 do not count
    assert majority_vote(["(c)", "b", "(c)"], task="mc", parser="release") == "b"


def test_vote_tie_goes_to_first_seen_value():
    # Counter.most_common order: 7 (2 votes, seen first) and 9 (2 votes) tie -> 7
    assert majority_vote(["7", "9", "9.0", "7.004"]) == "7"
    assert majority_vote(["9.0", "7", "7", "9"]) == "9.0"
    assert majority_vote(["c", "(a)", "a", "C"], task="mc", parser="lenient") == "c"


def test_vote_reads_with_the_parser_it_is_given():
    preds = ["<6%>.", "6", "7"]
    assert majority_vote(preds) == "<6%>."  # default: <6%>. is 6, 2 votes
    assert majority_vote(preds, parser="release") == "6"  # release: "<6%>." is no answer; tie


# --- pass_at_k -----------------------------------------------------------------------


def test_pass_at_k_hand_worked():
    # n=5, c=2, k=2: C(3,2)/C(5,2) = 3/10 -> 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=10, c=3, k=5: C(7,5)/C(10,5) = 21/252 = 1/12 -> 11/12
    assert pass_at_k(10, 3, 5) == pytest.approx(11 / 12)


def test_pass_at_1_is_fraction_correct():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)


def test_pass_at_k_no_correct_is_zero():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 0, 5) == 0.0


def test_pass_at_k_all_correct_is_one():
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 5, 5) == 1.0


def test_pass_at_k_with_k_equal_n_is_any_correct():
    # drawing all n samples: passes iff at least one is correct
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 4) == 0.0


def test_pass_at_k_stable_for_large_n():
    # n=1000, c=1, k=1 -> 1/1000; n=1000, c=500, k=100 is ~1 without overflow
    assert pass_at_k(1000, 1, 1) == pytest.approx(1e-3)
    value = pass_at_k(1000, 500, 100)
    assert math.isfinite(value) and value == pytest.approx(1.0)


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


# --- rerank_pick ---------------------------------------------------------------------


def test_rerank_pick_highest():
    assert rerank_pick([0.1, 0.9, 0.3]) == 1
    assert rerank_pick([-3.0, -1.0, -2.0]) == 1


def test_rerank_pick_ties_go_first():
    assert rerank_pick([0.2, 0.7, 0.7, 0.1]) == 1
    assert rerank_pick([0.5, 0.5, 0.5]) == 0


def test_rerank_pick_nan_never_wins():
    assert rerank_pick([float("nan"), 0.1, 0.2]) == 2


def test_rerank_pick_ranks_only_samples_with_an_answer():
    """As the release's evaluate_rerank: the best-scored sample that gave an answer."""
    assert rerank_pick([0.9, 0.4, 0.6], [False, True, True]) == 2
    assert rerank_pick([0.9, 0.4], [False, False]) is None
    assert rerank_pick([0.1, 0.2], [True, True]) == rerank_pick([0.1, 0.2]) == 1
    with pytest.raises(ValueError):
        rerank_pick([0.1, 0.2], [True])


def test_candidate_is_what_votes_and_is_reranked():
    from reft.eval.metrics import candidate

    # a sample's extracted answer (``pred``) as the vote and the reranker read it
    assert candidate("18", "numeric") == 18.0
    assert candidate(None, "numeric") is None and candidate("no answer here", "numeric") is None
    assert candidate("c", "mc") == "c"
    assert candidate("(c)", "mc", parser="release") is None  # longer than one letter


def test_rerank_pick_empty_raises():
    with pytest.raises(ValueError):
        rerank_pick([])


# --- summarize -----------------------------------------------------------------------


def test_summarize_hand_worked():
    records = [
        # pass@2 with n=4, c=1: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
        {"greedy_correct": True, "sample_correct": [True, False, False, False],
         "vote_correct": False, "rerank_correct": True},
        # c=4 -> 1.0
        {"greedy_correct": True, "sample_correct": [True] * 4,
         "vote_correct": True, "rerank_correct": True},
        # c=0 -> 0.0
        {"greedy_correct": False, "sample_correct": [False] * 4,
         "vote_correct": False, "rerank_correct": False},
        # c=2 -> 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6
        {"greedy_correct": False, "sample_correct": [False, True, True, False],
         "vote_correct": True, "rerank_correct": False},
    ]
    out = summarize(records)
    assert out["n"] == 4
    assert out["k"] == 4
    assert out["top1"] == pytest.approx(0.5)
    assert out["vote@k"] == pytest.approx(0.5)
    assert out["rerank@k"] == pytest.approx(0.5)
    # k = 4 = n per question -> pass@4 is "any sample correct": 3 of 4 questions
    assert out["pass@k"] == pytest.approx(0.75)


def test_summarize_uneven_samples_uses_smallest_k():
    # k = min(4, 2) = 2; q1: n=4, c=1 -> 0.5; q2: n=2, c=0 -> 0.0; mean 0.25
    out = summarize([{"sample_correct": [True, False, False, False]},
                     {"sample_correct": [False, False]}])
    assert out["k"] == 2
    assert out["pass@k"] == pytest.approx(0.25)


def test_summarize_omits_metrics_not_computed():
    out = summarize([{"greedy_correct": True, "sample_correct": [], "vote_correct": None,
                      "rerank_correct": None},
                     {"greedy_correct": False}])
    assert out == {"n": 2, "top1": 0.5}


def test_summarize_none_counts_wrong_when_metric_computed():
    # vote is computed for 1 of 3 questions and right there: 1/3 over all questions
    out = summarize([{"vote_correct": True}, {"vote_correct": None}, {}])
    assert out["vote@k"] == pytest.approx(1 / 3)


def test_summarize_empty():
    assert summarize([]) == {"n": 0}


def test_summarize_fractions_in_unit_interval():
    out = summarize([{"greedy_correct": True, "sample_correct": [True],
                      "vote_correct": True, "rerank_correct": True}])
    assert out == {"n": 1, "top1": 1.0, "vote@k": 1.0, "pass@k": 1.0, "rerank@k": 1.0, "k": 1}
    # and all-wrong is all zeros, not negative
    out = summarize([{"greedy_correct": False, "sample_correct": [False, False],
                      "vote_correct": False, "rerank_correct": False}])
    assert out == {"n": 1, "top1": 0.0, "vote@k": 0.0, "pass@k": 0.0, "rerank@k": 0.0, "k": 2}
