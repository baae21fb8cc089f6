"""The churn model on a simulated holdout: better than RFM, calibrated, sensible in direction.

A real pipeline end to end: simulate → ingest → monthly snapshots → Feast (apply,
get_historical_features through churn_v1) → labels after each cutoff → LightGBM trained
on early cutoffs, stopped and calibrated on a later one, scored on the last.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from kizuna.features.compute import Tables, build_feature_files, cutoff_range
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.simulate import simulate
from kizuna.features.store import apply, open_store, service_features, training_frame
from kizuna.settings import Settings
from kizuna.training.churn import ChurnModel, model_inputs, rfm_churn_score
from kizuna.training.evaluate import classification_report
from kizuna.training.labels import default_churn_horizon, outcome_frame
from tests.conftest import NOW


@pytest.fixture(scope="module")
def holdout(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("churn")
    settings = Settings(home=root / "home")
    sim = simulate(root / "sim", customers=4_000, days=600, seed=5)
    ingest([sim.out], settings, now=NOW)
    con, tables = connect(settings), Tables.from_lake(Lake(settings))
    horizon = default_churn_horizon(con, tables)
    cutoffs = cutoff_range(date(2024, 4, 1), date(2025, 4, 1), timedelta(days=30))
    labels = outcome_frame(con, tables, cutoffs, horizon.days)
    labels = labels[labels["churned"].notna()]
    build_feature_files(settings, cutoffs)
    apply(settings)
    frame = training_frame(settings, labels[["customer_id", "event_timestamp"]], "churn_v1")
    frame = frame.merge(labels, on=["customer_id", "event_timestamp"])
    store = open_store(settings)
    features = [f.split(":")[1] for f in service_features(store, "churn_v1")]
    labelled = sorted(frame["event_timestamp"].unique())
    # Train on the early cutoffs, validate on one later, test on the last one whose labels
    # are complete; a gap of H between them keeps label windows from overlapping.
    test_at = labelled[-1]
    valid_at = max(t for t in labelled if t + timedelta(days=horizon.days) <= test_at)
    train = frame[frame["event_timestamp"] + timedelta(days=horizon.days) <= valid_at]
    valid = frame[frame["event_timestamp"] == valid_at]
    test = frame[frame["event_timestamp"] == test_at]
    model = ChurnModel(seed=7).fit(
        model_inputs(train, features),
        train["churned"].astype(int),
        model_inputs(valid, features),
        valid["churned"].astype(int),
    )
    return model, features, test, horizon


def test_churn_model_beats_the_rfm_heuristic_on_a_later_cutoff(holdout) -> None:
    model, features, test, _ = holdout
    y = test["churned"].astype(int).to_numpy()
    assert len(y) > 1_000 and 0.1 < y.mean() < 0.9
    p = model.predict_proba(model_inputs(test, features))
    ours = classification_report(y, p)
    rfm = classification_report(y, 1 / (1 + np.exp(-rfm_churn_score(test) / 5)))
    assert ours["auc"] > rfm["auc"] + 0.01, (ours["auc"], rfm["auc"])
    assert ours["auc"] > 0.7
    assert ours["ece"] < 0.06
    assert abs(p.mean() - y.mean()) < 0.05


def test_more_complaints_never_lower_churn_risk_much(holdout) -> None:
    model, features, test, _ = holdout
    x = model_inputs(test, features)
    worse = x.copy()
    worse["complaints_30d"] = worse["complaints_30d"] + 3
    worse["complaints_90d"] = worse["complaints_90d"] + 3
    delta = model.predict_proba(worse) - model.predict_proba(x)
    assert delta.mean() >= 0


def test_risk_bands_follow_the_probability(holdout) -> None:
    model, *_ = holdout
    bands = model.risk_band(np.array([0.05, 0.3, 0.45, 0.6, 0.99]))
    assert bands.tolist() == ["low", "medium", "medium", "high", "high"]
