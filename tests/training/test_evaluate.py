"""Evaluation metrics on cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from kizuna.training.evaluate import (
    auuc,
    classification_report,
    expected_calibration_error,
    gini,
    ips_policy_value,
    lift_and_capture,
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
