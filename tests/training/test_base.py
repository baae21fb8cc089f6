"""The typed model inputs and the LightGBM matrix built from them."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from kizuna.training.base import lgb_matrix, lgb_threads


def test_lgb_matrix_predicts_as_the_frame_does_with_unseen_and_missing_categories() -> None:
    rng = np.random.default_rng(3)
    rows = 2_000
    tier = rng.choice(["bronze", "silver", "gold"], rows)
    spend = rng.gamma(2.0, 50.0, rows)
    spend[rng.random(rows) < 0.1] = np.nan
    y = (spend > 100) ^ (tier == "gold")
    train = pd.DataFrame(
        {"tier": pd.Categorical(tier), "spend": spend, "n": rng.integers(0, 9, rows)}
    )
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "min_data_in_leaf": 5},
        lgb.Dataset(train, y.astype(int)),
        num_boost_round=30,
    )
    # A later frame: its own category order, a category training never saw, a missing one.
    scoring = pd.DataFrame(
        {
            "tier": pd.Categorical(["platinum", "gold", None, "bronze", "silver"]),
            "spend": [150.0, np.nan, 20.0, 300.0, 90.0],
            "n": [1, 2, 3, 4, 5],
        }
    )
    matrix = lgb_matrix(scoring, booster.pandas_categorical)
    assert matrix.flags.c_contiguous and matrix.dtype == np.float64
    assert np.isnan(matrix[0, 0]) and np.isnan(matrix[2, 0])
    np.testing.assert_array_equal(booster.predict(matrix), booster.predict(scoring))
    assert np.ptp(booster.predict(scoring)) > 0.1
    spare = lgb_matrix(scoring, booster.pandas_categorical, spare=1)
    assert spare.shape == (5, 4) and spare.flags.c_contiguous
    np.testing.assert_array_equal(spare[:, :3], matrix)
    assert np.isnan(spare[:, 3]).all()


def test_lgb_threads_is_every_core_when_unset() -> None:
    assert lgb_threads(None) >= 1
    assert lgb_threads(1) == 1
