"""The value model on a simulated holdout: it must rank spend better than last period's spend
and than RFM segment means, miss by less, and never predict negative spend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kizuna.training.base import MODEL_ROW
from kizuna.training.dataset import time_split
from kizuna.training.value import ValueModel, evaluate, last_period_spend
from tests.world import VALUE_DAYS


def test_last_period_spend_scales_the_window_that_covers_the_label_window() -> None:
    frame = pd.DataFrame(
        {"spend_30d": [30.0], "spend_90d": [60.0], "spend_180d": [90.0], "spend_365d": [365.0]}
    )
    assert last_period_spend(frame, 30).tolist() == [30.0]
    assert last_period_spend(frame, 120).tolist() == [60.0]  # 90 * 120 / 180
    assert last_period_spend(frame, 365).tolist() == [365.0]
    assert last_period_spend(frame, 730).tolist() == [730.0]
    assert last_period_spend(frame.assign(spend_365d=np.nan), 365).tolist() == [0.0]


@pytest.fixture(scope="module")
def holdout(sim_world):
    frame = sim_world.outcomes("value_v1")
    split = time_split(sim_world.cutoffs, label_days=VALUE_DAYS, data_end=sim_world.end)
    train, valid, test = (split.part(frame, name) for name in ("train", "valid", "test"))
    # One thread: on a shared machine LightGBM's default threads can wait on each other.
    model = ValueModel(value_days=VALUE_DAYS, seed=7, n_jobs=1)
    model.fit(train, valid, sim_world.features("value_v1"))
    return model, train, test, evaluate(model, test)


def test_the_model_beats_last_period_spend_and_rfm_means(holdout) -> None:
    _, _, test, table = holdout
    assert len(test) > 2_000
    assert table.index.tolist() == [MODEL_ROW, "last_period_spend", "rfm"]
    ours, last = table.loc[MODEL_ROW], table.loc["last_period_spend"]
    # Measured: Spearman 0.735 vs 0.609, Gini 0.748 vs 0.651, MAE 89.2 vs 104.5.
    assert ours["spearman"] > 0.7 and ours["spearman"] > last["spearman"] + 0.08
    assert ours["gini"] > 0.7 and ours["gini"] > last["gini"] + 0.06
    assert ours["mae"] < 95 and ours["mae"] < last["mae"] - 10
    assert ours["revenue_top20"] > last["revenue_top20"]
    assert ours["gini"] > table.loc["rfm", "gini"] and ours["mae"] < table.loc["rfm", "mae"]


def test_negative_targets_are_clipped_for_training_and_kept_for_evaluation(holdout) -> None:
    model, train, test, table = holdout
    # Returns make some labels negative; Tweedie would refuse them unclipped.
    assert (train["future_value"] < 0).any()
    assert 0 < model.negative_share_ < 0.02
    actual = test["future_value"].dropna()
    predicted = model.predict(test.loc[actual.index])["predicted_value"]
    assert table.loc[MODEL_ROW, "mae"] == pytest.approx((actual - predicted).abs().mean())


def test_predictions_are_never_negative_even_for_odd_inputs(holdout) -> None:
    model, _, test, _ = holdout
    rng = np.random.default_rng(5)
    odd = test.copy()
    for name in ("spend_365d", "spend_180d", "spend_trend_90d", "avg_order_value"):
        odd[name] = rng.normal(0, 1_000, len(odd))
    odd["rfm_segment"] = rng.permutation(odd["rfm_segment"].to_numpy())
    for frame in (test, odd):
        out = model.predict(frame)
        assert out.index.equals(frame.index)
        assert out.columns.tolist() == ["predicted_value", "expected_purchases"]
        assert (out["expected_purchases"] >= 0).all()
        assert (out["predicted_value"] >= 0).all() and out["predicted_value"].notna().all()


def test_higher_recent_spend_means_higher_predicted_value_on_average(holdout) -> None:
    model, _, test, _ = holdout
    predicted = model.predict(test)["predicted_value"]
    spenders = test["spend_180d"] > test["spend_180d"].median()
    assert predicted[spenders].mean() > 2 * predicted[~spenders].mean()


def test_rows_without_a_closed_window_are_left_out_of_evaluation(holdout) -> None:
    model, _, test, table = holdout
    unlabelled = test.head(50).assign(future_value=np.nan)
    padded = pd.concat([test, unlabelled.set_axis(unlabelled.index + 10**9)])
    assert evaluate(model, padded).equals(table)
    unseen = model.baseline_predictions(test.head(1).assign(rfm_segment="Never heard of"))
    assert unseen["rfm"]["predicted_value"].iloc[0] == pytest.approx(model.mean_value_)
