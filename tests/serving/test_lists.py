"""The six marketer lists over the API of a real server: who is on each, filters, order,
pages, CSV, unknown parameters, and reasons a marketer can act on."""

from __future__ import annotations

import csv
import io
import json
import re

import pandas as pd
import pytest

from kizuna.serving.lists import COLUMNS, REPLENISHMENT_COLUMNS, SPECS
from kizuna.training import registry

LISTS = list(SPECS)
# "country: DE", "exposures 365d: 8", "days since last nps: 1.14e+03": a feature's name
# and value instead of words.
RAW_DUMP = re.compile(r"(^|; )[a-z0-9_ ]+: \S+$|_[a-z0-9]|\btrue\b|\bfalse\b|\bnan\b|e\+\d", re.I)


def get(server, name: str, **params):
    with server.client("lists") as c:
        response = c.get(f"/v1/lists/{name}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def window(server) -> int:
    return int(registry.load(server.settings, "churn").window_days)


@pytest.fixture(scope="module")
def tops(server) -> dict[str, pd.DataFrame]:
    """The first 1,000 of every list (the at-risk list from churn 0)."""
    out = {}
    for name in LISTS:
        extra = {"min_churn": 0} if name == "at-risk" else {}
        if name in ("due-to-repurchase", "replenishment"):
            extra["due_within_days"] = 30
        out[name] = pd.DataFrame(get(server, name, limit=1000, **extra)["customers"])
    return out


@pytest.mark.parametrize("name", LISTS)
def test_an_unknown_parameter_is_a_422_naming_it(server, name) -> None:
    with server.client("lists") as c:
        response = c.get(f"/v1/lists/{name}", params={"segmnt": "Loyal"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["field"] == "segmnt" and "segment" in body["detail"]


def test_a_sort_the_list_does_not_offer_is_a_422(server) -> None:
    with server.client("lists") as c:
        response = c.get("/v1/lists/top-value", params={"sort": "due_date"})
    assert response.status_code == 422 and "cannot sort by 'due_date'" in response.json()["detail"]


@pytest.mark.parametrize("name", LISTS)
def test_every_list_has_rows_tiers_and_no_opted_out_customer(server, tops, name) -> None:
    rows = tops[name]
    assert len(rows) > 0, f"the {name} list is empty on the simulated retailer"
    assert rows["loyalty_tier"].notna().all()
    expected = [*COLUMNS[:1], *REPLENISHMENT_COLUMNS, *COLUMNS[1:]]
    assert list(rows.columns) == (expected if name == "replenishment" else COLUMNS)
    profile = pd.read_parquet(
        server.settings.home_dir / "features" / "snapshots" / "customer_profile.parquet"
    )
    opted_out = set(profile.loc[profile["consent_profiling"] == False, "customer_id"])  # noqa: E712
    assert opted_out and not set(rows["customer_id"]) & opted_out


def test_who_is_on_the_risk_win_back_and_never_converted_lists(tops, window) -> None:
    at_risk, win_back, never = tops["at-risk"], tops["win-back"], tops["never-converted"]
    # At risk: buyers who can still be won back (an order within the churn window).
    assert at_risk["days_since_last_order"].notna().all()
    assert (at_risk["days_since_last_order"] <= window).all()
    assert at_risk["value_at_risk"].is_monotonic_decreasing
    # Win-back: lapsed buyers, most spent first.
    assert (win_back["days_since_last_order"] > window).all()
    assert win_back["spend_lifetime"].is_monotonic_decreasing
    # Never converted: no order at all; they are on no buyer list.
    assert never["days_since_last_order"].isna().all()
    buyers = set(at_risk["customer_id"]) | set(win_back["customer_id"])
    buyers |= set(tops["top-value"]["customer_id"])
    assert not buyers & set(never["customer_id"])
    assert tops["top-value"]["value_predicted"].is_monotonic_decreasing


def test_replenishment_lists_customers_due_to_rebuy_a_category(server, tops) -> None:
    rows = tops["replenishment"]
    assert rows["days_until_due"].is_monotonic_increasing
    assert (rows["days_until_due"] <= 30).all()
    assert (rows["days_until_due"] >= -rows["cycle_days"]).all()  # a lapsed cycle is win-back's
    category = rows["category"].mode()[0]
    one = pd.DataFrame(get(server, "replenishment", category=category, limit=1000)["customers"])
    assert len(one) > 0 and set(one["category"]) == {category}
    with server.client("lists") as c:
        listed = c.get("/v1/lists/replenishment/categories").json()
    assert category in {c["category"] for c in listed}


def test_filters_narrow_every_list(server) -> None:
    everyone = get(server, "top-value", limit=1)["total"]
    gold = get(server, "top-value", tier="GOLD", limit=1000)  # case does not matter
    assert 0 < gold["total"] < everyone
    assert {r["loyalty_tier"] for r in gold["customers"]} == {"gold"}
    country = gold["customers"][0]["country"]
    both = get(server, "top-value", tier="gold", country=country, limit=1000)
    assert 0 < both["total"] <= gold["total"]
    assert {(r["loyalty_tier"], r["country"]) for r in both["customers"]} == {("gold", country)}
    high = get(server, "win-back", risk_band="high", limit=1000)["customers"]
    assert high and {r["risk_band"] for r in high} == {"high"}
    valued = get(server, "top-value", min_value=100, limit=1000)["customers"]
    assert valued and min(r["value_predicted"] for r in valued) >= 100


def test_pages_cover_the_list_once_in_order(server) -> None:
    whole = get(server, "win-back", limit=300, sort="churn_probability", order="asc")
    assert whole["sort"] == "churn_probability" and whole["order"] == "asc"
    pages = [
        get(server, "win-back", limit=100, offset=k, sort="churn_probability", order="asc")
        for k in (0, 100, 200)
    ]
    assert {p["total"] for p in pages} == {whole["total"]} and whole["total"] > 300
    ids = [r["customer_id"] for p in pages for r in p["customers"]]
    assert ids == [r["customer_id"] for r in whole["customers"]]
    churn = [r["churn_probability"] for r in whole["customers"]]
    assert churn == sorted(churn)


@pytest.mark.parametrize("name", LISTS)
def test_the_csv_is_the_json_with_reasons_as_a_json_array(server, name) -> None:
    with server.client("lists") as c:
        text = c.get(f"/v1/lists/{name}", params={"format": "csv", "limit": 50}).text
    body = get(server, name, limit=50)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["customer_id"] for r in rows] == [r["customer_id"] for r in body["customers"]]
    assert [json.loads(r["reasons"]) for r in rows] == [r["reasons"] for r in body["customers"]]


@pytest.mark.parametrize("name", LISTS)
def test_reasons_are_words_without_dumps_contradictions_or_repeats(tops, name) -> None:
    reasons = tops[name]["reasons"]
    assert reasons.map(len).gt(0).mean() > 0.9, "most customers should have a reason"
    for row in reasons:
        assert len(row) == len(set(row)), row
        for text in row:
            assert not RAW_DUMP.search(text), f"raw dump in the {name} list: {text!r}"
            assert "for 0 days" not in text and not re.search(r"\b0 (orders|visits)\b", text)
    if name in ("due-to-repurchase", "replenishment"):  # timing, not churn
        words = " ".join(" ".join(r) for r in reasons).lower()
        assert "churn" not in words and "risk" not in words


def test_scores_carry_the_loyalty_tier(server, tops) -> None:
    ids = tops["top-value"]["customer_id"].head(5).tolist()
    with server.client("score") as c:
        scores = c.post("/v1/scores", json={"customer_ids": ids}).json()["scores"]
    assert [s["loyalty_tier"] for s in scores] == tops["top-value"]["loyalty_tier"].head(5).tolist()
