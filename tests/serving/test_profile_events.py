"""A profile_change event reaches scores, lists and offers within seconds, and is history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kizuna.features.lake import Lake

pytestmark = pytest.mark.slow


def _post_change(server, event_id: str, customer: str, changes: dict) -> None:
    body = {
        "events": [
            {
                "event_id": event_id,
                "customer_id": customer,
                "type": "profile_change",
                "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
                "changes": changes,
            }
        ]
    }
    with server.client("events") as c:
        response = c.post("/v1/events", json=body)
    assert response.status_code == 202, response.text


def _until(check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "the change never took effect"
        time.sleep(0.3)
    return result


def test_an_opt_out_event_stops_scores_lists_and_offers(scratch_server) -> None:
    server = scratch_server
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 20}).json()
    # Away from the head of the list, which the erasure tests use.
    profiling, emailing = rows["customers"][-1]["customer_id"], rows["customers"][-2]["customer_id"]

    _post_change(server, f"optout-{profiling}", profiling, {"consent_profiling": False})
    _post_change(
        server, f"noemail-{emailing}", emailing, {"consent_email": False, "loyalty_tier": "gold"}
    )

    def score(customer):
        with server.client("score") as c:
            return c.post("/v1/scores", json={"customer_ids": [customer]}).json()["scores"][0]

    started = time.monotonic()

    def opted_out():
        record = score(profiling)
        return record if record["scored"] is False else None

    record = _until(opted_out)
    assert "opted out of profiling" in record["reason"] and "churn" not in record
    # Both batches applied (the inbox has nothing pending), then everything reflects them.
    assert _until(lambda: httpx.get(f"{server.url}/readyz").json()["events"]["pending"] == 0)
    assert score(emailing)["loyalty_tier"] == "gold"
    print(f"the changes took effect in {time.monotonic() - started:.1f} s")

    with server.client("lists") as c:
        page = c.get("/v1/lists/at-risk", params={"limit": 1000}).json()
        listed = {r["customer_id"] for r in page["customers"]}
        assert profiling not in listed
        by_email = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 1000}).json()
        assert emailing not in {r["customer_id"] for r in by_email["customers"]}
    with server.client("offers") as c:
        decision = c.post(
            "/v1/offers/next-best", json={"customer_id": emailing, "channel": "email"}
        ).json()
    assert decision["action"] == "no_offer" and "no consent for email" in decision["reason"]

    # Kept as history, dated when it happened.
    changes = Lake(server.settings).read("profile_changes").set_index("change_id")
    assert not changes.loc[f"optout-{profiling}", "consent_profiling"]
    assert changes.loc[f"noemail-{emailing}", "loyalty_tier"] == "gold"
    assert changes.loc[f"noemail-{emailing}", "source"] == "api"


def test_a_profile_change_without_changes_is_a_422_naming_it(server) -> None:
    body = {
        "events": [
            {
                "event_id": "empty-change",
                "customer_id": "C000001",
                "type": "profile_change",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ]
    }
    with server.client("events") as c:
        response = c.post("/v1/events", json=body)
        assert response.status_code == 422
        assert "a profile_change needs changes" in response.json()["detail"]
        body["events"][0]["changes"] = {"consent_fax": True}
        assert c.post("/v1/events", json=body).status_code == 422
