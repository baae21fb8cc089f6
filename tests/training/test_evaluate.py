"""Evaluation metrics on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kizuna.training.evaluate import (
    auuc,
    classification_report,
    concordance_index,
    expected_calibration_error,
    gini,
    horizon_report,
    ips_policy_value,
    lift_and_capture,
    outcome_by,
    qini_coefficient,
    qini_curve,
    reliability_table,
    value_report,
)


def test_calibration_error_is_zero_when_rates_match_and_grows_when_they_do_not() -> None:
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    p = np.array([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75])
    assert expected_calibration_error(y, p) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(8, 0.9)) == pytest.approx(0.4)
    assert reliability_table(y, p) == [(0.25, 0.25, 4), (0.75, 0.75, 4)]


def test_lift_and_capture_at_the_top() -> None:
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    score = np.arange(10)[::-1]  # the two positives ranked first
    assert lift_and_capture(y, score, top=0.2) == (5.0, 1.0)
    assert lift_and_capture(y, -score, top=0.2) == (0.0, 0.0)


def test_classification_report_on_a_perfect_ranking() -> None:
    y = np.array([0, 0, 1, 1])
    report = classification_report(y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert report["auc"] == 1.0 and report["pr_auc"] == 1.0
    assert report["brier"] == pytest.approx((0.01 + 0.04 + 0.04 + 0.01) / 4)
    assert report["base_rate"] == 0.5


def test_value_metrics() -> None:
    actual = np.array([100.0, 0.0, 50.0, 0.0, 0.0])
    assert gini(actual, actual) == pytest.approx(1.0)
    assert gini(actual, -actual) < 0
    report = value_report(actual, np.array([90.0, 1.0, 60.0, 2.0, 0.0]))
    assert report["revenue_top20"] == pytest.approx(100 / 150)
    assert report["mae"] == pytest.approx((10 + 1 + 10 + 2 + 0) / 5)
    assert report["spearman"] > 0.8


def test_qini_prefers_the_ranking_that_finds_the_responders() -> None:
    # Treated responders at rows 0-1; control rows respond at a 25% base rate.
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    treated = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    good = np.array([0.9, 0.8, 0.1, 0.1, 0.0, 0.0, 0.0, 0.0])
    share, gain = qini_curve(y, treated, good)
    assert share[-1] == 1.0
    assert gain[-1] == pytest.approx(2 - 1 * 4 / 4)
    assert qini_coefficient(y, treated, good) > qini_coefficient(y, treated, -good)
    assert auuc(y, treated, good) > auuc(y, treated, -good)


def test_ips_recovers_a_known_policy_value_on_randomized_data() -> None:
    rng = np.random.default_rng(0)
    n = 200_000
    arm = rng.integers(0, 2, n)  # randomized 50/50
    outcome = rng.random(n) < np.where(arm == 1, 0.3, 0.1)
    everyone_treated = ips_policy_value(outcome, arm, np.ones(n, dtype=int), np.full(n, 0.5))
    assert everyone_treated.value == pytest.approx(0.3, abs=3 * everyone_treated.standard_error)
    assert everyone_treated.matched == (arm == 1).sum()
    with pytest.raises(ValueError, match="propensities must be positive"):
        ips_policy_value(outcome[:2], arm[:2], arm[:2], np.array([0.5, 0.0]))


def _harrell_by_pairs(time, predicted, event) -> float:
    concordant = comparable = 0.0
    for i in range(len(time)):
        for j in range(len(time)):
            if event[i] and time[j] > time[i]:
                comparable += 1
                if predicted[j] > predicted[i]:
                    concordant += 1.0
                elif predicted[j] == predicted[i]:
                    concordant += 0.5
    return concordant / comparable


def test_concordance_counts_only_pairs_that_start_with_an_event() -> None:
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([True, True, False, True])
    assert concordance_index(time, time, event) == 1.0
    assert concordance_index(time, -time, event) == 0.0
    assert concordance_index(time, np.ones(4), event) == 0.5
    # The censored row at 3 may not be ranked below the event at 4: that pair is unknown.
    assert concordance_index(time, np.array([1.0, 2.0, 9.0, 4.0]), event) == 1.0
    # One swapped pair out of the five comparable ones (1<2, 1<3, 1<4, 2<3, 2<4).
    assert concordance_index(time, np.array([2.0, 1.0, 3.0, 4.0]), event) == 0.8
    assert np.isnan(concordance_index(time, time, np.zeros(4, dtype=bool)))


def test_concordance_matches_the_pairwise_definition_with_ties() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        time = rng.integers(1, 12, 50).astype(float)
        predicted = rng.integers(0, 8, 50).astype(float)
        event = rng.random(50) < 0.6
        assert concordance_index(time, predicted, event) == pytest.approx(
            _harrell_by_pairs(time, predicted, event)
        )


def test_horizon_outcomes_leave_out_rows_censored_before_the_horizon() -> None:
    time = np.array([5.0, 20.0, 20.0, 40.0, 10.0])
    event = np.array([True, True, False, False, False])
    happened, known = outcome_by(time, event, 30)
    assert happened.tolist() == [True, True, False, False, False]
    assert known.tolist() == [True, True, False, True, False]
    report = horizon_report(time, event, np.array([0.9, 0.6, 0.5, 0.2, 0.5]), 30)
    assert report["rows"] == 3 and report["observed_rate"] == pytest.approx(2 / 3)
    assert report["auc"] == 1.0
    assert report["brier"] == pytest.approx((0.01 + 0.16 + 0.04) / 3)
    with pytest.raises(ValueError, match="no row was observed"):
        horizon_report(time, np.zeros(5, dtype=bool), np.full(5, 0.5), 100)
