"""A degraded API: it starts with the champions that exist, says which are missing and why,
answers 503 where a route needs an absent model, and picks the model up once registered.
Cold start and unknown customers are served honestly.

Runs its own server on a copy of the trained retailer whose churn and offer champions have
been unset, with two customers ingested after the latest feature snapshot.
"""

from __future__ import annotations

import io
import shutil
import time
from csv import DictReader
from datetime import UTC, datetime

import httpx
import numpy as np
import pandas as pd
import pytest

from kizuna.features.ingest import ingest
from kizuna.serving.keys import KeyStore
from kizuna.serving.lists import COLUMNS
from kizuna.serving.scoring import (
    Champions,
    ScoreBook,
    ServingError,
    customers_without_vectors,
    latest_vectors,
    score_frame,
)
from kizuna.settings import Settings
from kizuna.training import registry
from tests.conftest import NOW
from tests.serving.conftest import Server, serving

PROBLEM = "application/problem+json"
UNSET = ("churn", "offers")
NEWCOMERS = ["NEW-0001", "NEW-0002"]


@pytest.fixture(scope="module")
def degraded_home(trained_home, tmp_path_factory) -> Settings:
    """The trained retailer without churn and offer champions, plus two new customers."""
    root = tmp_path_factory.mktemp("degraded")
    shutil.copytree(trained_home.home_dir, root / "home")
    shutil.copytree(trained_home.mlruns_dir, root / "mlruns")
    settings = trained_home.model_copy(update={"home": root / "home", "mlruns": root / "mlruns"})
    mlf = registry.client(settings)
    for name in UNSET:
        mlf.delete_registered_model_alias(registry.registered_name(name), registry.CHAMPION)
    signed_up = pd.Timestamp("2025-12-20", tz=UTC)
    path = root / "customers.parquet"
    pd.DataFrame({"customer_id": NEWCOMERS, "signup_at": [signed_up, signed_up]}).to_parquet(path)
    ingest([path], settings, now=NOW)
    return settings


@pytest.fixture(scope="module")
def degraded(degraded_home) -> Server:
    store = KeyStore(degraded_home)
    keys = {"all": store.create("degraded-all", ("score", "lists", "offers", "events"))}
    with serving(degraded_home, keys) as running:
        yield running


@pytest.fixture(scope="module")
def vectors(degraded_home) -> pd.DataFrame:
    return latest_vectors(degraded_home)


def scored_with_orders(vectors: pd.DataFrame, n: int) -> list[str]:
    keep = (vectors["consent_profiling"] != False) & (vectors["order_count_lifetime"] > 0)  # noqa: E712
    return vectors.loc[keep, "customer_id"].head(n).tolist()


def test_readyz_and_models_list_the_missing_models_with_the_reason(degraded) -> None:
    ready = httpx.get(f"{degraded.url}/readyz").json()
    assert ready["status"] == "degraded"
    assert set(ready["models"]) == {"repurchase", "value"}
    missing = {m["model"]: m for m in ready["missing_models"]}
    assert set(missing) == set(UNSET)
    assert missing["offers"]["registered_model"] == "kizuna-offers"
    assert "no champion registered for kizuna-offers" in missing["offers"]["reason"]
    assert "kizuna train offers" in missing["offers"]["reason"]
    assert "exposures" in missing["offers"]["reason"]
    assert "kizuna train churn" in missing["churn"]["reason"]
    with degraded.client() as c:
        models = c.get("/v1/models").json()
    assert set(models["models"]) == {"repurchase", "value"}
    assert models["missing_models"] == ready["missing_models"]
    assert models["models"]["value"]["version"] == registry.champion_version(
        degraded.settings, "value"
    )
    metrics = httpx.get(f"{degraded.url}/metrics").text
    assert 'kizuna_model_version{model="offers"} 0.0' in metrics


def test_next_best_without_an_offer_model_is_a_503_problem(degraded, vectors) -> None:
    (customer,) = scored_with_orders(vectors, 1)
    with degraded.client() as c:
        response = c.post(
            "/v1/offers/next-best", json={"customer_id": customer, "channel": "email"}
        )
    assert response.status_code == 503 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 503 and problem["title"] == "A model is not served"
    assert problem["detail"].startswith("the next best offer needs offers")
    assert "kizuna train offers" in problem["detail"]
    assert [m["model"] for m in problem["missing_models"]] == ["offers"]


def test_lists_that_need_churn_are_503_and_the_others_answer(degraded) -> None:
    with degraded.client() as c:
        at_risk = c.get("/v1/lists/at-risk")
        floored = c.get("/v1/lists/due-to-repurchase", params={"min_churn": 0.3})
        due = c.get("/v1/lists/due-to-repurchase", params={"due_within_days": 30})
        csv = c.get("/v1/lists/due-to-repurchase", params={"due_within_days": 30, "format": "csv"})
    assert at_risk.status_code == 503 and at_risk.headers["content-type"] == PROBLEM
    assert [m["model"] for m in at_risk.json()["missing_models"]] == ["churn"]
    assert "kizuna train churn" in at_risk.json()["detail"]
    assert floored.status_code == 503 and "due-to-repurchase" in floored.json()["detail"]
    assert due.status_code == 200
    rows = due.json()["customers"]
    assert rows and all(r["churn_probability"] is None and r["value_at_risk"] is None for r in rows)
    assert all(r["value_predicted"] is not None for r in rows)
    window = registry.load(degraded.settings, "value").value_days
    assert {r["value_window_days"] for r in rows} == {window}
    parsed = list(DictReader(io.StringIO(csv.text)))
    assert list(parsed[0]) == COLUMNS  # the churn columns are there, empty
    assert {r["churn_probability"] for r in parsed} == {""}


def test_scores_answer_with_the_served_models_and_name_the_missing(degraded, vectors) -> None:
    ids = scored_with_orders(vectors, 3)
    with degraded.client() as c:
        body = c.post("/v1/scores", json={"customer_ids": ids}).json()
    assert [m["model"] for m in body["missing_models"]] == list(UNSET)
    assert body["unknown_customers"] == []
    window = registry.load(degraded.settings, "value").value_days
    for record in body["scores"]:
        assert record["cold_start"] is False and record["scored"] is True
        assert record["churn"] is None and record["value_at_risk"] is None
        assert record["reasons"] is None
        assert record["value"]["window_days"] == window and record["value"]["predicted"] >= 0
        assert 0 <= record["repurchase"]["p_buy_30d"] <= 1
        assert set(record["model_versions"]) == {"repurchase", "value"}


def test_a_customer_without_a_feature_vector_gets_a_new_customers_scores(
    degraded, degraded_home, vectors
) -> None:
    assert set(NEWCOMERS) <= customers_without_vectors(degraded_home, vectors)
    with degraded.client() as c:
        body = c.post("/v1/scores", json={"customer_ids": [*NEWCOMERS, "never-seen"]}).json()
        unknown = c.post("/v1/scores", json={"customer_ids": ["never-seen"]})
    first, second = body["scores"]
    assert body["unknown_customers"] == ["never-seen"]
    assert [first["customer_id"], second["customer_id"]] == NEWCOMERS
    assert first["cold_start"] is True and second["cold_start"] is True
    # Population-level: the same scores for both, those of a customer with no history.
    book = ScoreBook(Champions.load(degraded_home), vectors, datetime.now(UTC))
    for record in (first, second):
        assert record["value"] == pytest.approx(book.cold_start["value"])
        assert record["repurchase"]["p_buy_30d"] == pytest.approx(
            book.cold_start["repurchase"]["p_buy_30d"]
        )
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    assert "ingest the customer or send an event" in unknown.json()["detail"]


def test_a_customer_without_orders_is_marked_cold_start(degraded, vectors) -> None:
    never_ordered = vectors.loc[
        vectors["order_count_lifetime"].fillna(0).eq(0) & (vectors["consent_profiling"] != False),  # noqa: E712
        "customer_id",
    ]
    assert len(never_ordered) > 0
    with degraded.client() as c:
        body = c.post("/v1/scores", json={"customer_ids": never_ordered.head(3).tolist()}).json()
    assert [r["cold_start"] for r in body["scores"]] == [True] * min(3, len(never_ordered))
    assert all(r["value"]["predicted"] >= 0 for r in body["scores"])


def test_score_frame_leaves_out_the_absent_models(degraded_home, vectors) -> None:
    champions = Champions.load(degraded_home)
    assert set(champions.versions) == {"repurchase", "value"}
    table = score_frame(champions.models, vectors.head(50))
    assert {"churn_probability", "risk_band", "value_at_risk"}.isdisjoint(table.columns)
    assert not any(c.startswith("uplift_") for c in table.columns)
    assert (table["value_window_days"] == champions.models["value"].value_days).all()
    assert np.isfinite(table["value_predicted"]).all() and "p_buy_30d" in table


def test_with_no_champion_at_all_the_error_says_to_train(settings) -> None:
    with pytest.raises(ServingError, match=r"kizuna train all") as raised:
        Champions.load(settings)
    assert "no champion registered for kizuna-churn" in str(raised.value)


def test_the_watcher_serves_a_model_registered_later(degraded, vectors) -> None:
    """Runs last here: it gives the churn and offer models their champions back."""
    settings = degraded.settings
    for name in UNSET:
        latest = str(registry.list_versions(settings, name)["version"].max())
        registry.promote(settings, name, latest, "the degraded test restores it")
    deadline = time.monotonic() + 120
    with degraded.client() as c:
        while time.monotonic() < deadline and c.get("/v1/models").json()["missing_models"]:
            time.sleep(0.5)
        models = c.get("/v1/models").json()
        (customer,) = scored_with_orders(vectors, 1)
        decision = c.post(
            "/v1/offers/next-best", json={"customer_id": customer, "channel": "email"}
        )
        newcomer = c.post(
            "/v1/offers/next-best", json={"customer_id": NEWCOMERS[0], "channel": "email"}
        )
        stranger = c.post(
            "/v1/offers/next-best", json={"customer_id": "never-seen", "channel": "sms"}
        )
        at_risk = c.get("/v1/lists/at-risk", params={"min_churn": 0})
        (record,) = c.post("/v1/scores", json={"customer_ids": [customer]}).json()["scores"]
    assert set(models["models"]) == {"churn", "repurchase", "value", "offers"}
    assert models["missing_models"] == []
    assert httpx.get(f"{degraded.url}/readyz").json()["status"] == "ready"
    assert decision.status_code == 200 and decision.json()["cold_start"] is False
    assert newcomer.status_code == 200 and newcomer.json()["cold_start"] is True
    assert stranger.status_code == 404 and stranger.headers["content-type"] == PROBLEM
    assert stranger.json()["field"] == "customer_id"
    assert at_risk.status_code == 200 and at_risk.json()["count"] > 0
    assert record["value_at_risk"] == pytest.approx(
        record["churn"]["probability"] * record["value"]["predicted"]
    )
