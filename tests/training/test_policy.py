"""Off-policy evaluation: IPS, SNIPS and doubly robust, against values known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kizuna.features.contracts import NO_OFFER
from kizuna.training import plots, registry
from kizuna.training.policy import PolicyEvaluationError, estimate, evaluate_candidate
from kizuna.training.trainer import TrainConfig, TrainingData, train


def logged_world(n: int = 40_000, seed: int = 3):
    """A randomized log: three arms sent with known propensities, each row's true P(buy)
    per arm known, and a candidate policy that depends on x."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    arms = np.array([NO_OFFER, "a", "b"], dtype=object)
    propensity = np.array([0.5, 0.3, 0.2])
    true = np.column_stack([0.10 + 0.05 * x, 0.12 + 0.10 * x, 0.20 - 0.08 * x])
    sent = rng.choice(3, size=n, p=propensity)
    y = (rng.random(n) < true[np.arange(n), sent]).astype(float)
    chosen = np.where(x > 0.6, 1, 2)
    truth = float(true[np.arange(n), chosen].mean())
    return x, arms, propensity, true, sent, y, chosen, truth


def test_every_estimator_finds_the_true_value_of_a_policy_it_never_ran() -> None:
    x, arms, propensity, true, sent, y, chosen, truth = logged_world()
    n = len(y)
    # An outcome model that is close but not exact (DR must not need it exact).
    q = true + 0.01 * np.sin(7 * x)[:, None]
    found = estimate(
        y,
        arms[sent],
        arms[chosen],
        propensity[sent],
        q_logged=q[np.arange(n), sent],
        q_chosen=q[np.arange(n), chosen],
    )
    for name in ("ips", "snips", "dr"):
        assert found[name].within(truth), (name, found[name], truth)
        assert 0 < found[name].standard_error < 0.01
    # The logged policy's own value is not the candidate's: the estimators are not
    # reading the logged purchase rate back.
    assert abs(y.mean() - truth) > 5 * found["ips"].standard_error
    # A good outcome model makes DR the tightest.
    assert found["dr"].standard_error < found["ips"].standard_error
    assert found["ips"].matched == int((sent == chosen).sum())


def test_dr_stays_unbiased_with_a_wrong_outcome_model() -> None:
    _, arms, propensity, _, sent, y, chosen, truth = logged_world(seed=4)
    wrong = np.full(len(y), 0.5)
    found = estimate(y, arms[sent], arms[chosen], propensity[sent], wrong, wrong)
    assert found["dr"].within(truth), (found["dr"], truth)


def test_rows_without_a_propensity_are_refused_with_the_reason() -> None:
    with pytest.raises(PolicyEvaluationError, match="positive propensity"):
        estimate(np.ones(3), ["a"] * 3, ["a"] * 3, [0.5, np.nan, 0.5])


@pytest.fixture(scope="module")
def candidate(sim_world, tmp_path_factory):
    """An offer model registered in its own MLflow store, trained on the sim world."""
    settings = sim_world.settings.model_copy(update={"mlruns": tmp_path_factory.mktemp("mlruns")})
    result = train(TrainingData.open(settings, TrainConfig(seed=7)), "offers")
    registry.log_and_gate(settings, result, plots.figures(result))
    return settings, result


def test_the_estimates_of_a_registered_model_hold_the_simulators_true_value(
    candidate, sim_world
) -> None:
    settings, result = candidate
    report = evaluate_candidate(settings, "champion")
    assert report.version == "1"
    held = report.exposures
    # Only sends the candidate neither trained nor validated on.
    first_test = pd.Timestamp(result.params["test_cutoffs"].split("..")[0], tz="UTC")
    assert (pd.to_datetime(held["event_timestamp"], utc=True) >= first_test).all()
    assert set(held["exposure_id"]) == set(result.test["exposure_id"])
    # The truth: each exposure's exact P(buy) under the arm the candidate chooses.
    chosen = result.model.choose(held)
    effects = pd.read_parquet(sim_world.truth / "offer_effects.parquet")
    control = effects.drop_duplicates("exposure_id").set_index("exposure_id")["p_buy_if_control"]
    offered = effects.set_index(["exposure_id", "offer_id"])["p_buy_if_offer"]
    true = [
        control[e] if a == NO_OFFER else offered[(e, a)]
        for e, a in zip(held["exposure_id"], chosen, strict=True)
    ]
    truth = float(np.mean(true))
    for name in ("ips", "snips", "dr"):
        found = report.estimate(name)
        print(f"{name}: {found.value:.4f} ± {found.standard_error:.4f} (truth {truth:.4f})")
        assert found.within(truth), (name, found, truth)
    logged = report.table.loc["logged"]
    assert logged["value"] == pytest.approx(held["purchased"].mean())
    assert logged["rows"] == len(held)


def test_an_unknown_candidate_says_what_to_list(candidate) -> None:
    settings, _ = candidate
    with pytest.raises(PolicyEvaluationError, match="no version or alias '9'"):
        evaluate_candidate(settings, "9")
