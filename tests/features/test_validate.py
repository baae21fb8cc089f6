"""Each validation rule, with the exact reason it produces."""

from __future__ import annotations

import pandas as pd
import pytest

from kizuna.features.contracts import CONTRACTS, markdown
from kizuna.features.validate import REASON_DOCS, parse_timestamps, validate
from tests.conftest import NOW

VALID = {
    "customers": {
        "customer_id": "c1",
        "signup_at": "2024-01-01",
        "country": "JP",
        "loyalty_tier": "Gold",
        "consent_email": "yes",
        "consent_sms": "0",
        "consent_push": "",
        "consent_profiling": "true",
    },
    "orders": {
        "order_id": "o1",
        "customer_id": "c1",
        "ordered_at": "2024-01-02T10:00:00Z",
        "amount": "12.5",
        "discount_amount": "",
        "offer_id": "",
        "channel": "web",
        "is_return": "",
    },
    "order_lines": {
        "order_id": "o1",
        "line_number": "1",
        "product_id": "p1",
        "category": "tea",
        "quantity": "2",
        "unit_price": "6.25",
    },
    "events": {
        "event_id": "e1",
        "customer_id": "c1",
        "occurred_at": "2024-01-02",
        "type": "nps_response",
        "value": "9",
        "channel": "",
    },
    "offers": {
        "offer_id": "f1",
        "kind": "percent_discount",
        "value": "10",
        "cost": "0.5",
        "channel": "email",
        "valid_from": "2024-01-01",
        "valid_to": "2024-12-31",
        "eligibility": '{"min_orders": 1}',
    },
    "exposures": {
        "exposure_id": "x1",
        "customer_id": "c1",
        "offer_id": "",
        "sent_at": "2024-01-03",
        "channel": "email",
        "propensity": "0.25",
    },
}


def check(kind: str, **changes: str) -> tuple[pd.DataFrame, list[str]]:
    row = {**VALID[kind], **changes}
    result = validate(
        pd.DataFrame([row]),
        CONTRACTS[kind],
        source_tz="UTC",
        now=NOW,
        future_tolerance=pd.Timedelta(days=1),
    )
    return result.accepted, list(result.reasons)


@pytest.mark.parametrize("kind", list(VALID))
def test_a_valid_row_of_every_kind_is_accepted(kind: str) -> None:
    accepted, reasons = check(kind)
    assert reasons == []
    assert list(accepted.columns) == CONTRACTS[kind].names


@pytest.mark.parametrize(
    ("kind", "changes", "reason"),
    [
        ("orders", {"customer_id": "  "}, "customer_id:missing"),
        ("orders", {"amount": "12,5€"}, "amount:not_a_number"),
        ("orders", {"ordered_at": "yesterday"}, "ordered_at:not_a_timestamp"),
        ("orders", {"ordered_at": "2026-01-03T00:00:00Z"}, "ordered_at:in_future"),
        ("orders", {"is_return": "maybe"}, "is_return:not_a_boolean"),
        ("orders", {"channel": "carrier pigeon"}, "channel:not_allowed"),
        ("orders", {"discount_amount": "-1"}, "discount_amount:below_minimum"),
        ("orders", {"amount": "-3"}, "amount:negative_not_return"),
        ("orders", {"amount": "3", "is_return": "true"}, "amount:positive_return"),
        ("order_lines", {"quantity": "0"}, "quantity:zero"),
        ("order_lines", {"line_number": "1.5"}, "line_number:not_an_integer"),
        ("order_lines", {"unit_price": "-0.01"}, "unit_price:below_minimum"),
        ("events", {"type": "tweet"}, "type:not_allowed"),
        ("events", {"value": "11"}, "value:out_of_range"),
        ("events", {"type": "csat_response", "value": "0"}, "value:out_of_range"),
        ("events", {"type": "review", "value": ""}, "value:out_of_range"),
        ("offers", {"valid_to": "2023-12-31"}, "valid_to:before_valid_from"),
        ("offers", {"eligibility": "gold customers"}, "eligibility:not_json_object"),
        ("offers", {"eligibility": '{"vip": true}'}, "eligibility:not_json_object"),
        ("exposures", {"propensity": "0"}, "propensity:not_positive"),
        ("exposures", {"propensity": "1.5"}, "propensity:above_maximum"),
        ("customers", {"loyalty_tier": "diamond"}, "loyalty_tier:not_allowed"),
    ],
)
def test_each_rule_gives_its_exact_reason(kind: str, changes: dict, reason: str) -> None:
    accepted, reasons = check(kind, **changes)
    assert accepted.empty
    assert reasons == [reason]
    assert reason.split(":")[1] in REASON_DOCS


def test_several_problems_are_all_named() -> None:
    _, reasons = check("orders", customer_id="", amount="x", ordered_at="never")
    assert reasons == ["customer_id:missing; ordered_at:not_a_timestamp; amount:not_a_number"]


def test_returns_keep_their_negative_amount() -> None:
    accepted, reasons = check("orders", amount="-3", is_return="yes")
    assert reasons == []
    assert accepted["amount"].item() == -3.0
    assert bool(accepted["is_return"].item()) is True


def test_values_are_typed_and_normalised() -> None:
    accepted, _ = check("customers")
    row = accepted.iloc[0]
    assert row["loyalty_tier"] == "gold"
    assert bool(row["consent_email"]) is True
    assert bool(row["consent_sms"]) is False
    assert pd.isna(row["consent_push"])
    assert row["signup_at"] == pd.Timestamp("2024-01-01", tz="UTC")


def test_time_zones_offsets_kept_naive_read_in_the_source_zone() -> None:
    values = pd.Series(["2024-03-01T09:00:00+09:00", "2024-03-01 09:00", "2024-07-01 09:00"])
    parsed = parse_timestamps(values, "Europe/London")
    assert list(parsed) == [
        pd.Timestamp("2024-03-01 00:00", tz="UTC"),
        pd.Timestamp("2024-03-01 09:00", tz="UTC"),  # GMT in winter
        pd.Timestamp("2024-07-01 08:00", tz="UTC"),  # BST in summer
    ]


def test_every_column_is_documented() -> None:
    text = markdown()
    for contract in CONTRACTS.values():
        assert f"## {contract.kind}" in text
        for column in contract.columns:
            assert column.meaning, f"{contract.kind}.{column.name} has no meaning"
            assert f"`{column.name}`" in text


def test_docs_data_md_is_generated_from_the_code() -> None:
    from pathlib import Path

    from kizuna.features.datadoc import data_markdown

    path = Path(__file__).resolve().parents[2] / "docs" / "data.md"
    assert path.read_text() == data_markdown(), "run: make docs"
