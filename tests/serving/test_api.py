"""The API against a real running server: happy paths, errors, scopes, lists."""

from __future__ import annotations

import csv
import io
import json

import httpx
import numpy as np
import pandas as pd
import pytest

from kizuna.serving.lists import COLUMNS
from kizuna.training import registry

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def customers(server) -> pd.DataFrame:
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"min_churn": 0, "limit": 100000}).json()
    return pd.DataFrame(rows["customers"])


def test_health_and_readiness_need_no_key(server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/readyz").json()
    assert ready["status"] == "ready" and ready["customers"] > 1_000
    assert set(ready["models"]) == {"churn", "repurchase", "value", "offers"}
    assert ready["missing_models"] == []
    assert 0.0 <= ready["reasons_ready"] <= 1.0
    assert set(ready["page_warming"]) <= {"kpis", "category cycles", "lists", "timelines"}
    server.wait_page_warm()  # the marketer page's figures are prepared behind the serving


def test_scores_of_known_customers(server, customers) -> None:
    ids = customers["customer_id"].head(3).tolist()
    with server.client("score") as c:
        response = c.post("/v1/scores", json={"customer_ids": ids})
    assert response.status_code == 200
    body = response.json()
    assert body["unknown_customers"] == [] and body["missing_models"] == []
    scores = body["scores"]
    assert [s["customer_id"] for s in scores] == ids
    versions = {n: registry.champion_version(server.settings, n) for n in ["churn", "value"]}
    window = registry.load(server.settings, "value").value_days
    for s in scores:
        assert s["cold_start"] is False and s["scored"] is True
        assert 0 <= s["churn"]["probability"] <= 1
        assert s["churn"]["band"] in {"low", "medium", "high"}
        p = [s["repurchase"][f"p_buy_{h}d"] for h in (7, 14, 30, 60, 90)]
        assert p == sorted(p) and p[0] >= 0 and p[-1] <= 1
        timing = s["repurchase"]
        days = [timing[f"expected_date{k}"] for k in ("_p25", "", "_p75")]
        dated = [d for d in days if d is not None]
        assert dated == sorted(dated) and all(d >= s["features_as_of"][:10] for d in dated)
        # No median day exactly when a purchase within 90 days is less likely than not.
        assert (days[1] is None) == (timing["unlikely_within_days"] == 90) == (p[-1] < 0.5)
        assert timing["overdue"] in (True, False, None)
        assert s["value"]["window_days"] == window and s["value"]["predicted"] >= 0
        assert s["value_at_risk"] == pytest.approx(
            s["churn"]["probability"] * s["value"]["predicted"]
        )
        assert s["reasons"] and all(isinstance(r, str) and r for r in s["reasons"])
        assert s["model_versions"]["churn"] == versions["churn"]
        assert s["model_versions"]["value"] == versions["value"]
        assert s["feature_age_hours"] >= 0


def test_the_riskiest_customer_has_a_recency_reason(server, customers) -> None:
    riskiest = customers.sort_values("churn_probability").iloc[-1]["customer_id"]
    with server.client("score") as c:
        (record,) = c.post("/v1/scores", json={"customer_ids": [riskiest]}).json()["scores"]
    assert record["churn"]["band"] == "high"
    assert any("no order for" in r or "orders" in r for r in record["reasons"]), record


def test_a_never_seen_customer_is_a_404_problem(server) -> None:
    with server.client("score") as c:
        response = c.post("/v1/scores", json={"customer_ids": ["never-seen"]})
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["unknown_customers"] == ["never-seen"] and problem["field"] == "customer_ids"
    assert "unknown customer 'never-seen'" in problem["detail"]
    assert "send an event" in problem["detail"]


def test_a_batch_answers_its_known_customers_and_lists_the_unknown(server, customers) -> None:
    known = customers["customer_id"].head(2).tolist()
    with server.client("score") as c:
        body = c.post(
            "/v1/scores", json={"customer_ids": [known[0], "nobody-1", known[1], "nobody-2"]}
        ).json()
        both = c.post("/v1/scores", json={"customer_ids": ["nobody-1", "nobody-2"]})
    assert [s["customer_id"] for s in body["scores"]] == known
    assert body["unknown_customers"] == ["nobody-1", "nobody-2"]
    assert both.status_code == 404 and both.json()["unknown_customers"] == ["nobody-1", "nobody-2"]
    assert "none of the 2 customers" in both.json()["detail"]


def test_profiling_opt_out_gets_no_scores(server, trained_home, sim_world) -> None:
    customers = pd.read_parquet(sim_world.sim.out / "customers.parquet")
    opted_out = customers.loc[customers["consent_profiling"] == False, "customer_id"]  # noqa: E712
    assert len(opted_out) > 0
    with server.client("score") as c:
        scores = c.post("/v1/scores", json={"customer_ids": opted_out.head(5).tolist()})
    for record in scores.json()["scores"]:
        assert record["scored"] is False and "churn" not in record
        assert "opted out of profiling" in record["reason"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"customer_ids": []}, 422, "customer_ids"),
        ({"customers": ["a"]}, 422, "customer_ids"),
        ({"customer_ids": "C1"}, 422, "customer_ids"),
        ({"customer_ids": [f"C{i}" for i in range(1_001)]}, 413, "customer_ids"),
    ],
)
def test_bad_score_requests_are_problems_naming_the_field(server, body, status, field) -> None:
    with server.client("score") as c:
        response = c.post("/v1/scores", json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status and problem["field"] == field
    assert problem["detail"]


def test_malformed_json_is_a_422_problem(server) -> None:
    with server.client("score") as c:
        response = c.post(
            "/v1/scores", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM


SCOPE_EVENT = {
    "event_id": "scope-test",
    "customer_id": "C000001",
    "type": "session",
    "occurred_at": "2025-12-01T00:00:00Z",
}
ROUTES = [
    ("POST", "/v1/scores", {"customer_ids": ["C000001"]}, "score", 200),
    ("GET", "/v1/lists/at-risk", None, "lists", 200),
    ("GET", "/v1/lists/due-to-repurchase", None, "lists", 200),
    ("GET", "/v1/models", None, "score", 200),
    ("POST", "/v1/offers/next-best", {"customer_id": "C000001", "channel": "email"}, "offers", 200),
    ("POST", "/v1/events", {"events": [SCOPE_EVENT]}, "events", 202),
    # An unknown decision: allowed keys get as far as the 404.
    ("POST", "/v1/decisions/unknown/outcome", {"outcome": "shown"}, "offers", 404),
]


@pytest.mark.parametrize(("method", "path", "body", "needs", "allowed"), ROUTES)
@pytest.mark.parametrize("scope", ["score", "offers", "events", "lists", "admin", None])
def test_every_scope_on_every_route(server, method, path, body, needs, allowed, scope) -> None:
    with server.client(scope) as c:
        response = c.request(method, path, json=body)
    if scope is None:
        assert response.status_code == 401
        assert "kizuna keys create" in response.json()["detail"]
    elif scope in (needs, "admin"):
        assert response.status_code == allowed, response.text
    else:
        assert response.status_code == 403
        assert response.json()["scope"] == needs


def test_an_unknown_key_is_401(server) -> None:
    response = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": "kz_wrong"})
    assert response.status_code == 401 and response.headers["content-type"] == PROBLEM


def test_at_risk_list_is_filtered_and_sorted_by_value_at_risk(server) -> None:
    params = {"min_churn": 0.6, "channel": "email", "limit": 50}
    with server.client("lists") as c:
        body = c.get("/v1/lists/at-risk", params=params).json()
    rows = pd.DataFrame(body["customers"])
    assert 0 < len(rows) <= 50 and body["count"] == len(rows)
    assert (rows["churn_probability"] >= 0.6).all()
    assert rows["value_at_risk"].is_monotonic_decreasing
    consent = pd.read_parquet(
        server.settings.home_dir / "features" / "snapshots" / "customer_profile.parquet"
    )
    latest = consent[consent["event_timestamp"] == consent["event_timestamp"].max()]
    emailable = set(latest.loc[latest["consent_email"] == True, "customer_id"])  # noqa: E712
    assert set(rows["customer_id"]) <= emailable


def test_segment_and_contact_filters(server, customers) -> None:
    segment = customers["rfm_segment"].dropna().mode()[0]
    with server.client("lists") as c:
        rows = c.get(
            "/v1/lists/at-risk",
            params={"min_churn": 0, "segment": segment, "not_contacted_days": 30, "limit": 500},
        ).json()["customers"]
    assert rows and {r["rfm_segment"] for r in rows} == {segment}
    assert all(
        r["days_since_last_contact"] is None or r["days_since_last_contact"] >= 30 for r in rows
    )


def test_due_to_repurchase_is_soonest_first(server) -> None:
    with server.client("lists") as c:
        rows = c.get("/v1/lists/due-to-repurchase", params={"due_within_days": 30}).json()
    dates = [r["expected_next_purchase_date"] for r in rows["customers"]]
    assert dates and dates == sorted(dates)
    assert all(r["unlikely_within_days"] is None for r in rows["customers"])


def test_csv_lists_parse_back_with_their_documented_columns(server) -> None:
    with server.client("lists") as c:
        response = c.get("/v1/lists/at-risk", params={"format": "csv", "min_churn": 0.3})
        json_rows = c.get("/v1/lists/at-risk", params={"min_churn": 0.3}).json()["customers"]
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == COLUMNS
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in json_rows]
    np.testing.assert_allclose(
        [float(r["value_at_risk"]) for r in rows],
        [r["value_at_risk"] for r in json_rows],
        rtol=1e-5,
    )
    # Reasons are a JSON array in one cell: no separator inside a reason can split them.
    assert [json.loads(r["reasons"]) for r in rows] == [r["reasons"] for r in json_rows]


def test_models_and_metrics(server) -> None:
    with server.client("score") as c:
        models = c.get("/v1/models").json()["models"]
        c.post("/v1/scores", json={"customer_ids": ["C000001", "C000002"]})
    for name in ["churn", "repurchase", "value", "offers"]:
        assert models[name]["version"] == registry.champion_version(server.settings, name)
    text = httpx.get(f"{server.url}/metrics").text
    buckets = [line for line in text.splitlines() if line.startswith("kizuna_request_seconds_b")]
    assert any('method="POST",route="/v1/scores",status="200"' in line for line in buckets)
    served = [line for line in text.splitlines() if line.startswith("kizuna_scores_served_total")]
    assert served and float(served[0].split()[-1]) >= 2
    assert 'kizuna_model_version{model="churn"}' in text


def test_openapi_documents_every_route_with_examples(server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    paths = schema["paths"]
    for path in ["/v1/scores", "/v1/lists/at-risk", "/v1/lists/due-to-repurchase", "/v1/models"]:
        assert path in paths
    request = schema["components"]["schemas"]["ScoresRequest"]
    assert request["examples"] == [{"customer_ids": ["C000001", "C000002"]}]
    from openapi_spec_validator import validate

    validate(schema)


def test_reasons_are_plain_words_without_repeats() -> None:
    from kizuna.serving.reasons import top_reasons

    row = {
        "days_since_last_order": 94.0,
        "gap_median_days": 31.0,
        "gap_mean_days": 33.0,
        "complaints_90d": 2.0,
        "last_nps": float("nan"),
    }
    names = ["days_since_last_order", "gap_mean_days", "complaints_90d", "last_nps"]
    reasons = top_reasons(names, [0.9, 0.5, 0.3, 0.2], row)
    assert reasons == ["no order for 94 days; usual gap 31 days", "2 complaints in 90 days"]
