"""MLflow tracking and the promotion gate, on a real MLflow store in a temporary folder."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from kizuna.training import cards, plots, registry
from kizuna.training.churn import ChurnModel
from kizuna.training.trainer import TrainConfig, TrainingData, TrainResult, evaluate, train


@pytest.fixture(scope="module")
def store(sim_world, tmp_path_factory):
    settings = sim_world.settings.model_copy(update={"mlruns": tmp_path_factory.mktemp("mlruns")})
    data = TrainingData.open(settings, TrainConfig(seed=7, max_train_cutoffs=6))
    result = train(data, "churn")
    first = registry.log_and_gate(settings, result, plots.figures(result))
    return settings, data, result, first


def weakened(result: TrainResult) -> TrainResult:
    """The same training rows, a model crippled to one shallow tree."""
    frame = result.test
    model = ChurnModel(n_estimators=1, num_leaves=2, seed=7)
    data_rows = result.model  # the fitted model tells which features it used
    train_rows = frame.sample(frac=0.5, random_state=1)
    valid_rows = frame.drop(train_rows.index)
    model.fit(train_rows, valid_rows, data_rows.features_)
    table = evaluate("churn", model, frame)
    return TrainResult("churn", model, result.features, result.split, table, frame, result.params)


def test_first_version_becomes_champion_with_lineage(store) -> None:
    settings, _, result, first = store
    assert first.alias == "champion" and first.version == "1"
    assert "first version" in first.reason
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(first.run_id)
    assert run.data.params["feature_service"] == "churn_v1"
    assert run.data.params["data_snapshot"] == result.params["data_snapshot"]
    assert run.data.tags["git_commit"]
    assert run.data.params["churn_horizon_days"] == str(result.params["churn_horizon_days"])
    assert run.data.metrics["auc"] == pytest.approx(result.evaluation.loc["kizuna", "auc"])
    assert run.data.metrics["rfm.auc"] == pytest.approx(result.evaluation.loc["rfm", "auc"])
    assert run.data.metrics["bgnbd.auc"] == pytest.approx(result.evaluation.loc["bgnbd", "auc"])
    artifacts = {
        a.path
        for a in mlflow.MlflowClient(settings.tracking_uri).list_artifacts(first.run_id, "plots")
    }
    assert artifacts == {"plots/calibration.png", "plots/gains.png", "plots/shap_summary.png"}


def test_the_trainer_scores_the_btyd_baselines_beside_the_model(store) -> None:
    _, _, result, _ = store
    table = result.evaluation
    assert {"kizuna", "rfm", "bgnbd", "bgnbd_p_alive"} <= set(table.index)
    # Same rows for every scorer: the base rate is one number.
    assert table["base_rate"].nunique() == 1
    assert table.loc["kizuna", "auc"] > table.loc["bgnbd", "auc"]
    assert table.loc["kizuna", "log_loss"] < table.loc["bgnbd", "log_loss"]


def test_registered_model_predicts_identically(store) -> None:
    settings, _, result, _ = store
    loaded = registry.load(settings, "churn", "champion")
    ours = result.model.predict(result.test)
    theirs = loaded.predict(result.test)
    pd.testing.assert_frame_equal(ours, theirs)
    # Through MLflow's own pyfunc interface too, with the logged signature.
    pyfunc = mlflow.pyfunc.load_model("models:/kizuna-churn@champion")
    assert pyfunc.metadata.signature is not None
    out = pyfunc.predict(result.test[result.features].head(20))
    np.testing.assert_allclose(
        out["churn_probability"].to_numpy(), ours["churn_probability"].head(20).to_numpy()
    )


def test_a_weakened_model_is_not_promoted(store) -> None:
    settings, _, result, first = store
    weak = weakened(result)
    assert weak.evaluation.loc["kizuna", "auc"] < result.evaluation.loc["kizuna", "auc"]
    verdict = registry.log_and_gate(settings, weak)
    assert verdict.alias == "challenger"
    assert verdict.champion == pytest.approx(result.evaluation.loc["kizuna", "auc"])
    assert "does not beat champion v1" in verdict.reason
    assert registry.champion_version(settings, "churn") == first.version
    versions = registry.list_versions(settings, "churn")
    row = versions[versions["version"] == int(verdict.version)].iloc[0]
    assert row["aliases"] == "challenger" and "does not beat" in row["gate_reason"]


def test_promote_by_hand_and_roll_back(store) -> None:
    settings, *_ = store
    versions = registry.list_versions(settings, "churn")
    latest = str(versions["version"].max())
    registry.promote(settings, "churn", latest, "testing the rollback")
    assert registry.champion_version(settings, "churn") == latest
    assert registry.rollback(settings, "churn") == "1"
    assert registry.champion_version(settings, "churn") == "1"
    with pytest.raises(registry.RegistryError, match="no earlier champion"):
        registry.rollback(settings, "churn")
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.promote(settings, "churn", "99", "typo")


def test_every_version_has_a_model_card_from_its_held_out_rows(store) -> None:
    settings, _, result, first = store
    text, version = registry.card(settings, "churn")  # the champion's
    assert version == first.version and text.startswith(f"# kizuna-churn v{first.version}")
    for section in [
        "## Intended use",
        "## Data",
        "## Features",
        "## Held-out evaluation",
        "## Calibration",
        "## By RFM segment, loyalty tier and country",
        "## Known limits",
        "## Consent",
    ]:
        assert section in text, section
    assert result.params["data_snapshot"] in text and result.params["test_cutoffs"] in text
    table = result.evaluation
    # The held-out table holds the model and its baselines, figures as the run logged them.
    assert f"| kizuna | {table.loc['kizuna', 'auc']:.4f}" in text
    assert f"| bgnbd | {table.loc['bgnbd', 'auc']:.4f}" in text
    assert f"{table.loc['kizuna', 'ece']:.4f}" in text
    # Each group's AUC is the model's on that group's held-out rows alone.
    groups = cards.by_group(result)
    assert set(groups["group"]) >= {"RFM segment", "loyalty tier"}
    assert (groups["rows"] >= cards.MIN_GROUP_ROWS).all()
    row = groups.dropna().iloc[0]
    column = {v: k for k, v in cards.GROUPS.items()}[row["group"]]
    part = result.test[result.test[column].astype(str) == row["value"]]
    expected = evaluate("churn", result.model, part).loc["kizuna", "auc"]
    assert row["metric"] == pytest.approx(expected)
    assert f"| {row['group']} | {row['value']} | {row['rows']} | {row['metric']:.4f} |" in text
    assert all(f"`{f}`" in text for f in result.features)


def test_a_card_of_a_missing_version_says_what_exists(store) -> None:
    settings, *_ = store
    with pytest.raises(registry.RegistryError, match="has no version 99; see `kizuna models"):
        registry.card(settings, "churn", "99")
