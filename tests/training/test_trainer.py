"""The shared trainer: time-ordered splits, the leakage guard, the past-only data of a
backtest, and the backtest's files, on the shared simulated retailer."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from kizuna.features.store import apply
from kizuna.training.backtest import backtest
from kizuna.training.dataset import (
    LeakageError,
    TimeSplit,
    allowing_profiling,
    check_no_leakage,
    send_split,
    time_split,
)
from kizuna.training.labels import LabelError, data_end, outcome_frame
from kizuna.training.trainer import TrainConfig, TrainingData, restrict_tables
from tests.world import VALUE_DAYS, run_cli

DAY = timedelta(days=1)


def at(day: int) -> datetime:
    return datetime(2025, 1, 1, tzinfo=UTC) + day * DAY


def test_time_split_keeps_label_windows_apart() -> None:
    cutoffs = [at(d) for d in range(0, 300, 10)]
    split = time_split(cutoffs, label_days=30, data_end=at(300))
    assert split.test == [at(270)]  # the latest cutoff whose 30 days have passed
    assert split.valid == [at(240)]
    assert max(split.train) == at(210)
    check_no_leakage(split)


def test_time_split_says_how_much_history_is_missing() -> None:
    with pytest.raises(LabelError, match="spanning at least 200 days"):
        time_split([at(d) for d in range(0, 150, 10)], label_days=100, data_end=at(400))
    with pytest.raises(LabelError, match="no cutoff has a closed 90-day"):
        time_split([at(100)], label_days=90, data_end=at(120))


def test_the_leakage_guard_rejects_overlapping_label_windows() -> None:
    split = TimeSplit(train=[at(0), at(20)], valid=[at(40)], test=[at(100)], label_days=30)
    with pytest.raises(LeakageError, match="10 days into the valid part"):
        check_no_leakage(split)


def test_send_split_keeps_whole_send_days_together() -> None:
    sends = [at(d) + h * timedelta(hours=1) for d in range(0, 400, 10) for h in range(3)]
    split = send_split(sends, label_days=14, valid_sends=3, test_sends=5)
    assert len(split.test) == 15 and len(split.valid) == 9
    assert {m.date() for m in split.test}.isdisjoint({m.date() for m in split.train})
    check_no_leakage(split)


def test_past_only_tables_see_nothing_after_the_cutoff(sim_world) -> None:
    until = datetime(2025, 3, 1, tzinfo=UTC)
    past = restrict_tables(sim_world.tables, until)
    assert data_end(sim_world.con, past) <= until
    cutoffs = [datetime(2024, 10, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)]
    horizon = sim_world.horizon.days
    seen = outcome_frame(sim_world.con, past, cutoffs, horizon, VALUE_DAYS)
    full = outcome_frame(sim_world.con, sim_world.tables, cutoffs, horizon, VALUE_DAYS)
    closed = seen["event_timestamp"] + pd.Timedelta(days=horizon) <= until
    # Windows that closed before the cutoff: the same labels. Open ones are never
    # "churned": a purchase seen before the cutoff says "stayed", anything else is unknown.
    merged = seen.merge(full, on=["customer_id", "event_timestamp"], suffixes=("", "_full"))
    assert (merged.loc[closed, "churned"] == merged.loc[closed, "churned_full"]).all()
    open_windows = merged.loc[~closed, "churned"]
    assert not open_windows.fillna(False).any() and open_windows.isna().sum() > 100
    assert merged.loc[~closed & merged["churned"].isna(), "churned_full"].any()


@pytest.fixture(scope="module")
def backtested(sim_world, tmp_path_factory):
    # A copy of the world: the backtest adds a snapshot, the other tests keep theirs.
    root = tmp_path_factory.mktemp("backtest")
    shutil.copytree(sim_world.settings.home_dir, root / "home")
    settings = sim_world.settings.model_copy(
        update={"home": root / "home", "mlruns": root / "mlruns"}
    )
    apply(settings)
    cutoff = datetime(2025, 7, 1, tzinfo=UTC)
    config = TrainConfig(seed=7, value_days=VALUE_DAYS, max_train_cutoffs=4)
    report = backtest(settings, cutoff, root / "out", config)
    return settings, cutoff, report


def test_backtest_trains_on_the_past_and_scores_every_customer(backtested, sim_world) -> None:
    _, cutoff, report = backtested
    files = {p.name for p in report.folder.iterdir()}
    assert {"scores.parquet", "metrics.csv", "metrics.txt", "backtest.json"} <= files
    scores = pd.read_parquet(report.folder / "scores.parquet")
    everyone = outcome_frame(sim_world.con, sim_world.tables, [cutoff], 30)
    # Every customer who allows profiling is scored; those who opted out are in no frame.
    population = allowing_profiling(sim_world.con, sim_world.tables, everyone)
    assert 0 < len(population) < len(everyone)
    assert set(scores["customer_id"]) == set(population["customer_id"])
    for column in ["churn_probability", "p_buy_30d", "predicted_value", "churned"]:
        assert column in scores.columns and scores[column].notna().any(), column
    metrics = pd.read_csv(report.folder / "metrics.csv")
    assert set(metrics["model"]) == {"churn", "repurchase", "value", "offers"}
    churn = metrics[metrics["model"] == "churn"].set_index("scorer")
    assert churn.loc["kizuna", "auc"] > churn.loc["rfm", "auc"]
    assert not report.notes


def test_backtest_training_used_only_data_before_the_cutoff(backtested) -> None:
    settings, cutoff, _ = backtested
    data = TrainingData.open(settings, TrainConfig(value_days=VALUE_DAYS), until=cutoff)
    assert data.end <= cutoff
    for name in ["churn", "repurchase", "value"]:
        split = data.split(name)
        assert max(split.test) + timedelta(days=split.label_days) <= cutoff


def test_train_and_models_commands_end_to_end(backtested) -> None:
    settings, _, _ = backtested
    first = run_cli(settings, "train", "churn", "--max-train-cutoffs", "4")
    assert first.returncode == 0, first.stderr
    assert "churn: held-out evaluation" in first.stdout
    for scorer in ("kizuna", "rfm", "bgnbd", "bgnbd_p_alive"):
        assert f"│ {scorer} " in first.stdout
    assert "kizuna-churn v1 → champion: first version" in first.stdout
    assert "churn: fitting on" in first.stderr  # progress lines
    again = run_cli(settings, "train", "churn", "--max-train-cutoffs", "4")
    assert again.returncode == 0, again.stderr
    assert "kizuna-churn v2 → challenger: auc" in again.stdout
    assert "does not beat champion v1" in again.stdout
    listed = run_cli(settings, "models", "list", "--model", "churn")
    assert "champion" in listed.stdout and "challenger" in listed.stdout
    assert run_cli(settings, "models", "promote", "churn", "2").returncode == 0
    rolled = run_cli(settings, "models", "rollback", "churn")
    assert rolled.returncode == 0 and "kizuna-churn v1 is champion again" in rolled.stdout
    card = run_cli(settings, "models", "card", "churn", "2")
    assert card.returncode == 0, card.stderr
    assert card.stdout.startswith("# kizuna-churn v2\n\n**Gate:** challenger: auc")
    print(card.stdout)
    missing = run_cli(settings, "models", "card", "churn", "7")
    assert missing.returncode != 0 and "kizuna models list --model churn" in missing.stderr
    assert "Traceback" not in missing.stderr
