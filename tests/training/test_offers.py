"""The offer model on the simulated retailer's randomized campaigns, against the truth.

Exposures through the real path (sim_world: simulate → ingest → snapshots → Feast →
offers_v1 features at each send). Split by send time: the last 18 sends (six per channel)
are the test; before them six sends validate, and the training sends are every earlier
one whose 14-day window closes before the first validation send.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kizuna.training.base import MODEL_ROW
from kizuna.training.offers import (
    NO_OFFER,
    OfferDataError,
    OfferModel,
    PolicyTree,
    candidate_splits,
    evaluate,
    grow_policy_tree,
    logged_actions,
    policy_difference,
    split_indicators,
)

WINDOW = timedelta(days=14)
TEST_SENDS, VALID_SENDS = 18, 6


def split_by_send(exposures: pd.DataFrame):
    """Train, validation and test exposures, whole sends, windows apart."""
    send_day = exposures["event_timestamp"].dt.floor("D")
    days = sorted(send_day.unique())
    test_days = days[-TEST_SENDS:]
    valid_days = [d for d in days if d + WINDOW <= test_days[0]][-VALID_SENDS:]
    train_days = [d for d in days if d + WINDOW <= valid_days[0]]
    return tuple(exposures[send_day.isin(part)] for part in (train_days, valid_days, test_days))


@pytest.fixture(scope="module")
def fitted(sim_world):
    train, valid, test = split_by_send(sim_world.exposures())
    model = OfferModel().fit(train, valid, sim_world.features("offers_v1"))
    return model, train, valid, test


@pytest.fixture(scope="module")
def fitted_tree(fitted, sim_world):
    _, train, valid, _ = fitted
    # Three CV folds keep the test quick; the benchmark uses the default five.
    return OfferModel(policy="tree", policy_folds=3).fit(
        train, valid, sim_world.features("offers_v1")
    )


def test_parts_are_time_ordered_and_windows_apart(fitted) -> None:
    _, train, valid, test = fitted
    assert train["event_timestamp"].max() + WINDOW <= valid["event_timestamp"].min()
    assert valid["event_timestamp"].max() + WINDOW <= test["event_timestamp"].min()
    assert len(train) > 15_000 and len(valid) > 3_000 and len(test) > 10_000
    # Every channel's campaigns, each with its control group, in every part.
    for part in (train, valid, test):
        arms = part.assign(arm=logged_actions(part)).groupby("channel")["arm"].unique()
        assert {c: set(a) for c, a in arms.items()} == {
            "email": {"pct10_email", "pct20_email", NO_OFFER},
            "sms": {"freeship_sms", NO_OFFER},
            "push": {"points_push", NO_OFFER},
        }


def test_offers_and_channels_are_learned_from_the_training_rows(fitted) -> None:
    model, *_ = fitted
    assert model.offers_ == ["freeship_sms", "pct10_email", "pct20_email", "points_push"]
    assert model.offer_channels_ == {
        "freeship_sms": "sms",
        "pct10_email": "email",
        "pct20_email": "email",
        "points_push": "push",
    }
    assert model.train_uplift_["pct20_email"] > model.train_uplift_["pct10_email"] > 0


def test_predictions_cover_every_offer_with_probabilities(fitted) -> None:
    model, _, _, test = fitted
    predictions = model.predict(test)
    assert predictions.index.equals(test.index)
    expected = {"p_buy_control"} | {
        f"{kind}_{o}" for o in model.offers_ for kind in ("p_buy", "uplift")
    }
    assert set(predictions.columns) == expected
    assert predictions.notna().all().all()
    p_buy = predictions.filter(like="p_buy_")
    assert ((p_buy >= 0) & (p_buy <= 1)).all().all()
    for offer in model.offers_:
        np.testing.assert_allclose(
            predictions[f"uplift_{offer}"],
            predictions[f"p_buy_{offer}"] - predictions["p_buy_control"],
        )


def test_policy_beats_random_and_ties_the_best_single_offer(fitted) -> None:
    model, _, _, test = fitted
    table = evaluate(model, test)
    assert list(table.index) == [MODEL_ROW, "random", "best_single_offer"]
    ours, rand, best = (table.loc[r, "policy_value"] for r in table.index)
    # Measured: 0.161 (kizuna), 0.142 (random), 0.164 (best single offer per channel); the
    # standard error of each value is 0.0056; the paired kizuna - best difference is
    # -0.0013 ± 0.0033 (2026-12-04). It is the same on every run since snapshot sums no
    # longer depend on DuckDB's thread order: before, 1e-13 differences in spend moved
    # LightGBM's bins and the gap drew anywhere from -0.013 to +0.001.
    assert ours > rand + 0.01, table
    chosen = model.choose(test)
    best_policy = np.where(
        test["channel"] == "email",
        "pct20_email",
        np.where(test["channel"] == "sms", "freeship_sms", "points_push"),
    )
    gap = policy_difference(
        test["purchased"], logged_actions(test), chosen, best_policy, test["propensity"]
    )
    assert gap.value == pytest.approx(ours - best)
    print(f"kizuna - best single offer: {gap.value:.4f} ± {gap.standard_error:.4f}")
    assert gap.value > -2 * gap.standard_error, (gap, table)
    # Qini of the model's ranking beats random scores for every offer (measured 0.003-0.02
    # against -0.005-0.004).
    for offer in model.offers_:
        assert table.loc[MODEL_ROW, f"qini_{offer}"] > table.loc["random", f"qini_{offer}"]
    assert table.loc[MODEL_ROW, "incremental_value"] > 0.03


def test_policy_tree_keeps_the_uplift_and_ties_the_best_single_offer(fitted, fitted_tree) -> None:
    model, _, _, test = fitted
    # The policy option changes only the choice, not the estimated uplift.
    pd.testing.assert_frame_equal(fitted_tree.predict(test), model.predict(test))
    assert set(fitted_tree.policy_trees_) == {"email", "sms", "push"}
    for channel, tree in fitted_tree.policy_trees_.items():
        cv = fitted_tree.policy_cv_[channel]
        assert set(cv) == {0, 1, 2}
        assert tree.depth == max(cv, key=lambda d: (cv[d][0], -d))
    chosen = fitted_tree.choose(test)
    allowed = {
        "email": {"pct10_email", "pct20_email", NO_OFFER},
        "sms": {"freeship_sms", NO_OFFER},
        "push": {"points_push", NO_OFFER},
    }
    for channel, actions in allowed.items():
        assert set(chosen[(test["channel"] == channel).to_numpy()]) <= actions
    table = evaluate(fitted_tree, test)
    best = table.loc["best_single_offer", "policy_value"]
    gap = policy_difference(
        test["purchased"],
        logged_actions(test),
        chosen,
        _best_single_policy(test),
        test["propensity"],
    )
    assert gap.value == pytest.approx(table.loc[MODEL_ROW, "policy_value"] - best)
    # Measured with five folds: 0.161 (email depth 0, push and sms depth 2) against 0.164; paired
    # difference -0.0031 ± 0.0026, no better than the argmax policy (-0.0030 ± 0.0039).
    assert gap.value > -2 * gap.standard_error, (gap, table)
    assert table.loc[MODEL_ROW, "policy_value"] > table.loc["random", "policy_value"] + 0.01
    assert best > 0


def _best_single_policy(test: pd.DataFrame) -> np.ndarray:
    return np.where(
        test["channel"] == "email",
        "pct20_email",
        np.where(test["channel"] == "sms", "freeship_sms", "points_push"),
    )


def test_churn_risk_baseline_sends_the_best_offer_to_the_riskiest_third(fitted) -> None:
    model, _, _, test = fitted
    risk = np.linspace(0, 1, len(test))
    table = evaluate(model, test, churn_risk=risk)
    assert table.loc["high_churn_risk", "offer_share"] == pytest.approx(1 / 3, abs=0.01)
    assert table.loc["best_single_offer", "offer_share"] == 1.0


def test_estimated_uplift_follows_the_true_uplift(fitted, sim_world) -> None:
    model, _, _, test = fitted
    truth = pd.read_parquet(sim_world.truth / "offer_effects.parquet")
    predictions = model.predict(test).assign(
        exposure_id=test["exposure_id"], channel=test["channel"]
    )
    for offer in model.offers_:
        rows = predictions[predictions["channel"] == model.offer_channels_[offer]]
        true = (
            truth[truth["offer_id"] == offer]
            .set_index("exposure_id")["true_uplift"]
            .reindex(rows["exposure_id"])
        )
        assert true.notna().all()
        estimated = rows[f"uplift_{offer}"].to_numpy()
        # Measured Spearman 0.27-0.32 and mean errors 0.005-0.014 per offer.
        assert stats.spearmanr(estimated, true).statistic > 0.2, offer
        assert estimated.mean() == pytest.approx(true.mean(), abs=0.02), offer


def _tiny_exposures(rows: int = 400, with_control: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    arms = np.array(["pct10_email", None] if with_control else ["pct10_email"], dtype=object)
    offer = arms[rng.integers(0, len(arms), rows)]
    return pd.DataFrame(
        {
            "offer_id": offer,
            "channel": "email",
            "propensity": 1 / len(arms),
            "purchased": rng.random(rows) < 0.2,
            "days_since_last_order": rng.integers(0, 200, rows).astype(float),
            "event_timestamp": pd.date_range("2024-01-01", periods=rows, freq="h", tz="UTC"),
        }
    )


def test_no_control_group_is_a_clear_error() -> None:
    frame = _tiny_exposures(with_control=False)
    with pytest.raises(OfferDataError, match="no control group"):
        OfferModel().fit(frame, frame, ["days_since_last_order"])
    assert issubclass(OfferDataError, ValueError)


def test_a_missing_propensity_column_names_the_column() -> None:
    frame = _tiny_exposures().drop(columns="propensity")
    with pytest.raises(OfferDataError, match="propensity"):
        OfferModel().fit(frame, frame, ["days_since_last_order"])


def test_policy_only_chooses_offers_of_the_row_channel() -> None:
    frame = _tiny_exposures(rows=600)
    model = OfferModel(learner="t", n_estimators=20).fit(frame, frame, ["days_since_last_order"])
    sms = frame.assign(channel="sms")
    assert (model.choose(sms, np.ones((len(sms), 1))) == NO_OFFER).all()
    assert (model.choose(frame, np.ones((len(frame), 1))) == "pct10_email").all()
    assert (model.choose(frame, -np.ones((len(frame), 1))) == NO_OFFER).all()


def test_policy_tree_splits_only_where_another_action_pays() -> None:
    rng = np.random.default_rng(1)
    rows = 4_000
    x = pd.DataFrame(
        {
            "womens": rng.integers(0, 2, rows).astype(float),
            "noise": rng.random(rows),
            "zip_code": pd.Categorical(rng.choice(["Rural", "Urban"], rows)),
        }
    )
    # Actions: nothing, mens (0.10 for everyone), womens (0.15 for womens buyers, else 0.02).
    scores = np.column_stack(
        [
            np.zeros(rows),
            np.full(rows, 0.10),
            np.where(x["womens"] == 1, 0.15, 0.02),
        ]
    ) + rng.normal(0, 0.01, (rows, 3))
    splits = candidate_splits(x, thresholds=8)
    assert ("zip_code", "==", "Rural") in splits and ("womens", "<=", 0.0) in splits
    indicators = split_indicators(x, splits)
    actions = [NO_OFFER, "mens_email", "womens_email"]

    _, leaf = grow_policy_tree(scores, indicators, depth=0, min_leaf=100)
    assert leaf == {"action": 1}  # the best single action: mens to everyone
    for depth in (1, 2):
        _, node = grow_policy_tree(scores, indicators, depth=depth, min_leaf=100)
        tree = PolicyTree(splits, node, actions, depth)
        chosen = tree.choose(x)
        expected = np.where(x["womens"] == 1, "womens_email", "mens_email")
        assert (chosen == expected).all(), tree.describe()
    assert tree.describe().startswith("if womens <= 0.0:")
    # A leaf may not be smaller than min_leaf: with half the rows required, no split.
    _, node = grow_policy_tree(scores, indicators, depth=2, min_leaf=0.6 * rows)
    assert node == {"action": 1}


def test_unknown_policy_is_rejected() -> None:
    frame = _tiny_exposures()
    with pytest.raises(ValueError, match="policy must be one of"):
        OfferModel(policy="greedy").fit(frame, frame, ["days_since_last_order"])


def test_policy_difference_is_paired() -> None:
    y = np.array([1.0, 0.0, 1.0, 1.0])
    logged = np.array(["a", "a", NO_OFFER, NO_OFFER], dtype=object)
    a = np.array(["a", "a", "a", "a"], dtype=object)
    b = np.array(["a", "a", NO_OFFER, NO_OFFER], dtype=object)
    d = policy_difference(y, logged, a, b, np.full(4, 0.5))
    # Terms: rows 0-1 agree (0), rows 2-3 only b matched a purchase: -2 each.
    assert d.value == pytest.approx(-1.0)
    assert d.matched == 2


@pytest.mark.parametrize(
    ("learner", "pool_effects"),
    [("t", True), ("s", True), ("x", True), ("dr", True), ("dr", False)],
)
def test_predict_equals_the_fitted_models_on_frames(fitted, sim_world, learner, pool_effects):
    """predict converts the rows to one matrix and sets the arm/offer column per variant;
    the numbers are those of each fitted model's own predict on the frame."""
    _, train, valid, test = fitted
    model = OfferModel(learner=learner, pool_effects=pool_effects, n_estimators=40).fit(
        train, valid, sim_world.features("offers_v1")
    )
    rows = test.iloc[:3000]
    got = model.predict(rows)
    x = model._inputs(rows)
    mu = model._outcomes(x)
    np.testing.assert_array_equal(got["p_buy_control"], mu[NO_OFFER])
    for offer in model.offers_:
        if learner in ("t", "s"):
            effect = mu[offer] - mu[NO_OFFER]
        elif learner == "dr":
            effects = model.effect_models_
            effect = effects.get("all_offers", effects.get(offer)).predict(
                model._with_offer(x, offer)
            )
        else:
            from_treated, from_control, weight = model.effect_models_[offer]
            effect = weight * from_control.predict(x) + (1 - weight) * from_treated.predict(x)
        np.testing.assert_allclose(
            got[f"p_buy_{offer}"], np.clip(mu[NO_OFFER] + effect, 0, 1), rtol=0, atol=1e-12
        )
    assert got["p_buy_control"].std() > 0.01  # not a constant that would match trivially


def test_predict_for_some_offers_gives_just_their_columns(fitted) -> None:
    model, _, _, test = fitted
    everything = model.predict(test)
    email = model.predict(test, offers=["pct10_email", "pct20_email"])
    assert list(email.columns) == [
        "p_buy_control",
        "p_buy_pct10_email",
        "p_buy_pct20_email",
        "uplift_pct10_email",
        "uplift_pct20_email",
    ]
    pd.testing.assert_frame_equal(email, everything[email.columns])
    with pytest.raises(ValueError, match=r"not in training.*knows"):
        model.predict(test, offers=["pct50_sms"])
