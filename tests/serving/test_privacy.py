"""Erasure and export (features/privacy.py) through the API of a real server on its own
copy of the trained home: after DELETE /v1/customers/{id} no file under KIZUNA_HOME or
the MLflow store holds the id, the API no longer knows them, an event cannot bring them
back, and the next training set lacks them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from kizuna.features.lake import Lake
from kizuna.features.privacy import Tombstones
from kizuna.serving.scoring import latest_vectors
from tests.world import run_cli

pytestmark = pytest.mark.slow


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _traces(roots: list[Path], customer_id: str) -> list[str]:
    """Files whose bytes hold the id, and Parquet files with a cell equal to it (their
    pages may be compressed, so the bytes alone would not prove it gone)."""
    needle = customer_id.encode()
    found = []
    for root in roots:
        for path in _files(root):
            if needle in path.read_bytes():
                found.append(str(path))
            elif path.suffix == ".parquet":
                frame = pd.read_parquet(path)
                text = frame.select_dtypes(exclude="number").astype("string")
                if text.eq(customer_id).fillna(False).any().any():
                    found.append(f"{path} (a cell)")
    return found


@pytest.fixture(scope="module")
def erased(scratch_server, tmp_path_factory):
    """A customer with orders, events, an offer decision and its outcome, and a row in a
    batch file; then erased through the API."""
    server, settings = scratch_server, scratch_server.settings
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"limit": 5}).json()["customers"]
    customer = rows[0]["customer_id"]
    now = datetime.now(UTC)
    with server.client("events") as c:
        sent = c.post(
            "/v1/events",
            json={
                "events": [
                    {
                        "event_id": f"privacy-buy-{customer}",
                        "customer_id": customer,
                        "type": "purchase",
                        "occurred_at": (now - timedelta(minutes=3)).isoformat(),
                        "amount": 20.0,
                    }
                ]
            },
        )
        assert sent.status_code == 202
    with server.client("offers") as c:
        decision = c.post(
            "/v1/offers/next-best", json={"customer_id": customer, "channel": "email"}
        ).json()
        reported = c.post(
            f"/v1/decisions/{decision['decision_id']}/outcome", json={"outcome": "shown"}
        )
        assert reported.status_code == 202
    batch = tmp_path_factory.mktemp("batch") / "scores.parquet"
    assert run_cli(settings, "score", "--out", str(batch)).returncode == 0
    assert customer in set(pd.read_parquet(batch)["customer_id"])
    with server.client("admin") as c:
        held = c.get(f"/v1/customers/{customer}/export")
        answer = c.delete(f"/v1/customers/{customer}")
    return customer, held, answer, batch, decision["decision_id"]


def test_the_export_holds_everything_before_the_erasure(erased) -> None:
    customer, held, _, _, decision_id = erased
    assert held.status_code == 200
    body = held.json()
    assert body["customer_id"] == customer
    assert len(body["lake"]["orders"]) >= 1 and len(body["lake"]["customers"]) == 1
    assert {o["order_id"] for o in body["lake"]["orders"]} >= {f"privacy-buy-{customer}"}
    # Theirs only, the next-best decision among them (the fuzzing's campaigns may add).
    assert {d["customer_id"] for d in body["decisions"]} == {customer}
    assert decision_id in {d["decision_id"] for d in body["decisions"]}
    assert {"decision_id": decision_id, "outcome": "shown"}.items() <= next(
        o for o in body["outcomes"] if o["decision_id"] == decision_id
    ).items()
    assert body["features"] and body["scores"]["customer_id"] == customer


def test_after_the_erasure_no_file_holds_the_id(erased, scratch_server) -> None:
    customer, _, answer, batch, _ = erased
    assert answer.status_code == 200, answer.text
    removed = answer.json()["removed"]
    for place in ("lake/customers", "lake/orders", "decisions", "outcomes", "batch outputs"):
        assert removed.get(place, 0) >= 1, (place, removed)
    assert removed.get("feast online store", 0) >= 1 and answer.json()["scores_dropped"]
    settings = scratch_server.settings
    assert _traces([settings.home_dir, settings.mlruns_dir, batch.parent], customer) == []
    assert Tombstones(settings).erased_at(customer) is not None


def test_the_api_forgets_them_and_an_event_cannot_bring_them_back(erased, scratch_server) -> None:
    customer, _, _, _, _ = erased
    with scratch_server.client("score") as c:
        assert c.post("/v1/scores", json={"customer_ids": [customer]}).status_code == 404
    event = {
        "event_id": f"privacy-again-{customer}",
        "customer_id": customer,
        "type": "session",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    with scratch_server.client("events") as c:
        refused = c.post("/v1/events", json={"events": [event]})
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]
    with scratch_server.client("admin") as c:
        assert c.get(f"/v1/customers/{customer}/export").status_code == 404
        assert c.delete(f"/v1/customers/{customer}").status_code == 404


def test_the_next_training_set_lacks_them(erased, scratch_server) -> None:
    customer, _, _, _, _ = erased
    settings = scratch_server.settings
    assert customer not in set(latest_vectors(settings)["customer_id"])
    lake = Lake(settings)
    for kind in ("customers", "orders", "events", "exposures"):
        assert customer not in set(lake.read(kind)["customer_id"].astype(str)), kind


def test_erasure_needs_the_admin_scope(scratch_server) -> None:
    with scratch_server.client("lists") as c:
        assert c.delete("/v1/customers/C000002").status_code == 403
