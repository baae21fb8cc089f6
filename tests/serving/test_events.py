"""Events: durable before the 202, idempotent, replayed after a crash, reflected in scores."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from kizuna.serving.events import EventInbox, to_contract_frames

PROBLEM = "application/problem+json"


def score(server, customer: str) -> dict:
    with server.client("score") as c:
        return c.post("/v1/scores", json={"customer_ids": [customer]}).json()["scores"][0]


def test_a_purchase_event_changes_the_next_score(server) -> None:
    with server.client("lists") as c:
        risky = c.get("/v1/lists/at-risk", params={"min_churn": 0.8, "limit": 1}).json()
    customer = risky["customers"][0]["customer_id"]
    before = score(server, customer)
    now = datetime.now(UTC)
    batch = {
        "events": [
            {
                "event_id": f"test-buy-{customer}",
                "customer_id": customer,
                "type": "purchase",
                "occurred_at": (now - timedelta(minutes=5)).isoformat(),
                "amount": 80.0,
            },
            {
                "event_id": f"test-visit-{customer}",
                "customer_id": customer,
                "type": "session",
                "occurred_at": (now - timedelta(minutes=9)).isoformat(),
            },
        ]
    }
    with server.client("events") as c:
        response = c.post("/v1/events", json=batch)
        assert response.status_code == 202
        assert response.json() == {"accepted": 2, "duplicates": 0}
        # Durable before the answer: the batch is already in the synced log.
        wal = (server.settings.home_dir / "serving" / "events.jsonl").read_text()
        assert f"test-buy-{customer}" in wal
        again = c.post("/v1/events", json=batch).json()
    assert again == {"accepted": 0, "duplicates": 2}
    deadline = time.monotonic() + 90
    after = before
    while time.monotonic() < deadline:
        after = score(server, customer)
        if after["features_as_of"] != before["features_as_of"]:
            break
        time.sleep(0.5)
    assert after["features_as_of"] > before["features_as_of"], "the score never refreshed"
    assert after["churn"]["probability"] < before["churn"]["probability"]
    assert after["reasons"] != before["reasons"]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (
            {"customer_id": "C1", "type": "purchase", "occurred_at": "2026-01-01T00:00:00Z"},
            "events.0",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C1",
                "type": "teleport",
                "occurred_at": "2026-01-01T00:00:00Z",
            },
            "events.0.type",
        ),
        (
            {
                "event_id": "e",
                "customer_id": "C1",
                "type": "session",
                "occurred_at": "2026-01-01T00:00:00",
            },
            "events.0.occurred_at",
        ),
    ],
)
def test_invalid_events_are_problems_naming_the_field(server, event, field) -> None:
    with server.client("events") as c:
        response = c.post("/v1/events", json={"events": [event]})
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM
    assert response.json()["field"].startswith(field)


def test_too_many_events_is_413(server) -> None:
    event = {"customer_id": "C1", "type": "session", "occurred_at": "2026-01-01T00:00:00Z"}
    events = [{**event, "event_id": f"bulk-{i}"} for i in range(1_001)]
    with server.client("events") as c:
        response = c.post("/v1/events", json={"events": events})
    assert response.status_code == 413 and response.json()["field"] == "events"


def _event(i: int) -> dict:
    return {
        "event_id": f"e{i}",
        "customer_id": "C1",
        "type": "purchase" if i % 2 else "session",
        "occurred_at": "2026-01-01T00:00:00+00:00",
        "amount": 10.0 if i % 2 else None,
    }


def test_an_acknowledged_batch_survives_a_failed_apply_and_is_replayed(tmp_path) -> None:
    def crash(batch):
        raise RuntimeError("the process died while applying")

    inbox = EventInbox(tmp_path, crash)
    assert inbox.accept([_event(1), _event(2)]) == (2, 0)
    inbox.wait()
    assert inbox.failures == 1
    inbox.close()
    applied: list = []
    restarted = EventInbox(tmp_path, applied.append)
    restarted.wait()
    assert [e["event_id"] for e in applied[0]] == ["e1", "e2"]
    assert restarted.accept([_event(1), _event(3)]) == (1, 1)  # ids survive the restart
    restarted.wait()
    restarted.close()
    # Applied batches are not replayed again.
    seen: list = []
    EventInbox(tmp_path, seen.append).wait()
    assert seen == []


def test_batches_that_queue_during_an_apply_are_applied_together_in_order(tmp_path) -> None:
    release, calls = threading.Event(), []

    def slow(events):
        calls.append([e["event_id"] for e in events])
        release.wait(10)

    inbox = EventInbox(tmp_path, slow)
    inbox.accept([_event(1)])
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in (2, 3, 4):
        inbox.accept([_event(i)])
    release.set()
    inbox.wait()
    inbox.close()
    assert calls == [["e1"], ["e2", "e3", "e4"]]
    assert (tmp_path / "events.applied").read_text() == "4"  # every line applied


def test_events_become_contract_rows() -> None:
    frames = to_contract_frames([_event(1), _event(2)])
    assert list(frames["orders"].columns) == ["order_id", "customer_id", "ordered_at", "amount"]
    assert frames["orders"]["order_id"].tolist() == ["e1"]
    assert frames["events"]["type"].tolist() == ["session"]
