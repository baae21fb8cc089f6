"""A retailer's own year of orders: backtest on a fresh ingest, train on expanding
windows, register, and score with whatever champions exist.

One year of a simulated retailer with a 120-day churn horizon: windows apart would need
train, validation and test windows of 120 days each, so every transaction model must fall
back to expanding windows and still train, evaluate on a held-out cutoff and refit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kizuna.features.compute import Tables, build_feature_files, cutoff_range
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.features.simulate import simulate
from kizuna.features.store import apply
from kizuna.settings import Settings
from kizuna.training.backtest import backtest
from kizuna.training.base import MODEL_ROW
from kizuna.training.dataset import EXPANDING, LeakageError, check_no_leakage, expanding_split
from kizuna.training.labels import never_buyer_value
from kizuna.training.runs import train_and_register
from kizuna.training.trainer import TrainConfig, TrainingData, train
from tests.conftest import NOW

pytestmark = pytest.mark.slow

START = date(2025, 1, 1)
DAYS = 365
HORIZON = 120


@pytest.fixture(scope="module")
def year(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("one-year")
    settings = Settings(home=root / "home", mlruns=root / "mlruns")
    sim = simulate(root / "sim", customers=2_500, days=DAYS, seed=11, start=START)
    ingest([sim.out], settings, now=NOW)
    return settings


def test_backtest_on_a_fresh_ingest_builds_applies_and_scores(year: Settings, tmp_path) -> None:
    # No `features build`, no `features apply`: the backtest does what it needs.
    cutoff = datetime(2025, 10, 1, tzinfo=UTC)
    config = TrainConfig(churn_horizon_days=60, value_days=60)
    report = backtest(year, cutoff, tmp_path / "bt", config, ("churn", "value", "offers"))
    table = report.metrics.set_index(["model", "scorer"])
    # Held-out: the outcome after the cutoff, never training data.
    auc = table.loc[("churn", MODEL_ROW), "auc"]
    assert 0.6 < auc < 1.0
    assert table.loc[("churn", MODEL_ROW), "auc"] > table.loc[("churn", "rfm"), "auc"]
    assert ("value", MODEL_ROW) in table.index
    # The offers need campaigns with closed windows before the cutoff; if they cannot
    # train, the backtest says so and goes on instead of stopping.
    trained = set(report.metrics["model"])
    assert {"churn", "value"} <= trained
    assert "offers" in trained or any(n.startswith("offers: not trained") for n in report.notes)
    scores = report.scores
    assert scores["customer_id"].is_unique and len(scores) > 1_000
    assert scores["churn_probability"].between(0, 1).all()


def test_expanding_split_cuts_training_labels_at_the_test_cutoff() -> None:
    cutoffs = [datetime(2025, 1, 8, tzinfo=UTC) + timedelta(weeks=w) for w in range(50)]
    end = datetime(2025, 12, 31, tzinfo=UTC)
    split = expanding_split(cutoffs, label_days=HORIZON, data_end=end, min_label_days=28)
    assert split.scheme == EXPANDING and split.valid == []
    (test,) = split.test
    assert test + timedelta(days=HORIZON) <= end < test + timedelta(days=HORIZON + 7)
    assert split.train_label_end == test
    assert max(split.train) + timedelta(days=28) <= test
    assert max(split.refit) + timedelta(days=28) <= end
    check_no_leakage(split)
    leaky = type(split)(**{**split.__dict__, "train_label_end": test + timedelta(days=1)})
    with pytest.raises(LeakageError, match="cut its training labels at the test cutoff"):
        check_no_leakage(leaky)


def test_a_year_trains_every_transaction_model_on_expanding_windows(year: Settings) -> None:
    cutoffs = cutoff_range(START + timedelta(days=28), START + timedelta(days=DAYS), timedelta(7))
    build_feature_files(year, cutoffs)
    apply(year)
    config = TrainConfig(churn_horizon_days=HORIZON, value_days=730)
    trained, skipped = train_and_register(
        year, ("churn", "repurchase", "value"), config, keep_going=True
    )
    assert skipped == []
    by_name = {t.result.name: t.result for t in trained}
    assert set(by_name) == {"churn", "repurchase", "value"}
    # 120-day churn and a 180-day value window cannot fit windows apart in a year; the
    # 90-day timing model can, and says which it used either way.
    for name in ("churn", "value"):
        result = by_name[name]
        assert result.split.scheme == EXPANDING
        assert result.params["split_reason"].startswith("the data cannot hold")
        assert result.params["refit_rows"] > result.params["train_rows"]
    assert by_name["repurchase"].params["split_reason"]
    # The value window fits the year (and says so) instead of refusing.
    value = by_name["value"]
    assert value.params["value_days"] == 180
    assert "instead of 730" in value.params["window_note"]
    assert value.model.value_days == 180
    # A customer without an order gets what such customers spent next (from the lake at
    # the latest closed training cutoffs), and that matches what they spent after the
    # held-out cutoff: measured on a model not refitted past it.
    con, tables = connect(year), Tables.from_lake(Lake(year))
    data = TrainingData.open(year, replace(config, refit=False))
    held = train(data, "value")
    held_out = never_buyer_value(con, tables, held.split.test, 180)
    assert held_out["rows"].sum() > 50 and held.model.cold_start_rows_ > 50
    groups = held.model.cold_start_values_
    predicted = np.array([groups[g] for g in held_out["from_days"]], dtype=float)
    weights = held_out["rows"].to_numpy()
    assert np.average(predicted, weights=weights) == pytest.approx(
        np.average(held_out["spend"].to_numpy(), weights=weights), rel=0.25
    )
    never = value.test.head(2).assign(
        purchase_days_lifetime=0, days_since_first_order=np.nan, tenure_days=[3.0, 4000.0]
    )
    out = value.model.predict(never)["predicted_value"].tolist()
    groups = value.model.cold_start_values_
    assert out == pytest.approx([groups[min(groups)], groups[max(groups)]])
    # Held-out quality against the baselines of the same run.
    churn = by_name["churn"].evaluation
    assert churn.loc[MODEL_ROW, "auc"] > churn.loc["rfm", "auc"]
    assert churn.loc[MODEL_ROW, "auc"] > 0.65
    spend = value.evaluation
    assert spend.loc[MODEL_ROW, "spearman"] > spend.loc["last_period_spend", "spearman"]
    # The deployed churn model predicts the full horizon from the latest vectors.
    latest = by_name["churn"].test
    p = by_name["churn"].model.predict_proba(latest.drop(columns=["label_window_days"]))
    assert np.isfinite(p).all() and 0.05 < p.mean() < 0.95
    assert all(t.verdict.version for t in trained)


def test_an_order_at_exactly_a_midnight_cutoff_trains(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    rng = np.random.default_rng(3)
    rows = []
    for c in range(400):
        day = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=int(rng.integers(0, 60)))
        while day < datetime(2025, 12, 1, tzinfo=UTC):
            # Every order at 00:00: each lands exactly on some snapshot cutoff.
            rows.append((f"o{len(rows)}", f"c{c}", day.strftime("%Y-%m-%dT00:00:00Z"), 20.0))
            day += timedelta(days=int(rng.integers(7, 90)))
    frame = pd.DataFrame(rows, columns=["order_id", "customer_id", "ordered_at", "amount"])
    frame.to_csv(tmp_path / "orders.csv", index=False)
    ingest([tmp_path / "orders.csv"], settings, now=NOW)
    cutoff = datetime(2025, 10, 1, tzinfo=UTC)
    config = TrainConfig(churn_horizon_days=45, value_days=45)
    report = backtest(settings, cutoff, tmp_path / "bt", config, ("churn",), every_days=7)
    table = report.metrics.set_index("scorer")
    assert 0.5 < table.loc[MODEL_ROW, "auc"] <= 1.0
    assert "bgnbd" in table.index and np.isfinite(table.loc["bgnbd", "auc"])
