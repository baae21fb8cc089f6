"""Events: durable before the 202, idempotent, replayed after a crash, reflected in scores."""

from __future__ import annotations

import json
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
        (
            {
                "event_id": "e",
                "customer_id": "C1",
                "type": "session",
                "occurred_at": "3149-04-04T16:27:23-07:51",
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


def _ids(batches: list) -> list[list[str]]:
    return [[e["event_id"] for e in batch] for batch in batches]


def _flat(batches: list) -> list[str]:
    return [e["event_id"] for batch in batches for e in batch]


def test_a_failed_batch_is_replayed_in_order_after_a_later_success_and_a_restart(
    tmp_path,
) -> None:
    """The lost-event bug: batch 1 fails, batch 2 would succeed, the process restarts."""
    broken, attempts = threading.Event(), []
    broken.set()

    def flaky(batch):
        attempts.append([e["event_id"] for e in batch])
        if broken.is_set() and "e1" in attempts[-1]:
            raise RuntimeError("the lake is unreachable")

    inbox = EventInbox(tmp_path, flaky, retry_delays=(60.0,))
    assert inbox.accept([_event(1)]) == (1, 0)
    deadline = time.monotonic() + 10
    while not inbox.failures and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inbox.accept([_event(2)]) == (1, 0)
    time.sleep(0.3)
    # Batch 2 waits behind batch 1 instead of moving the marker past it.
    assert attempts == [["e1"]]
    assert inbox.status()["pending"] == 2
    inbox.close()  # mid-retry: nothing is marked applied
    assert not (tmp_path / "events.applied").exists()
    broken.clear()
    applied: list = []
    restarted = EventInbox(tmp_path, applied.append)
    restarted.wait()
    assert _ids(applied) == [["e1", "e2"]]
    assert restarted.status()["pending"] == 0
    assert restarted.accept([_event(1), _event(3)]) == (1, 1)  # ids survive the restart
    restarted.wait()
    restarted.close()
    assert (tmp_path / "events.applied").read_text() == "3"
    seen: list = []  # applied batches are not replayed again
    EventInbox(tmp_path, seen.append).wait()
    assert seen == []


def test_a_batch_that_fails_then_succeeds_keeps_its_place(tmp_path) -> None:
    calls: list = []

    def twice_then_ok(batch):
        calls.append([e["event_id"] for e in batch])
        if len(calls) <= 2:
            raise OSError("disk busy")

    inbox = EventInbox(tmp_path, twice_then_ok, retry_delays=(0.05, 0.05, 0.05))
    inbox.accept([_event(1)])
    inbox.accept([_event(2)])
    inbox.wait()
    inbox.close()
    assert [i for c in calls[2:] for i in c] == ["e1", "e2"]  # e1 before e2, each once
    assert inbox.failures == 2 and not inbox.poisoned
    assert (tmp_path / "events.applied").read_text() == "2"


def test_a_poison_batch_is_moved_aside_with_its_reason_and_never_skipped_silently(
    tmp_path,
) -> None:
    applied: list = []

    def picky(batch):
        if any(e["customer_id"] == "BAD" for e in batch):
            raise ValueError("customer BAD breaks the feature SQL")
        applied.append(batch)

    poison = [{**_event(1), "customer_id": "BAD"}]
    inbox = EventInbox(tmp_path, picky, retry_delays=(0.01, 0.01))
    inbox.accept(poison)
    inbox.accept([_event(2)])
    inbox.wait()
    status = inbox.status()
    assert status["poisoned_batches"] == 1 and status["pending"] == 0
    assert status["failed_attempts"] == 3  # the first try and both retries
    assert "customer BAD breaks the feature SQL" in status["last_error"]
    assert _flat(applied) == ["e2"]
    records = [json.loads(line) for line in inbox.poison_path.read_text().splitlines()]
    assert [(r["line"], r["attempts"]) for r in records] == [(1, 3)]
    assert "customer BAD breaks" in records[0]["reason"]
    assert records[0]["events"][0]["event_id"] == "e1"
    # Its ids are released: once the cause is fixed, the CRM can send them again.
    assert inbox.accept([_event(1)]) == (1, 0)
    inbox.wait()
    inbox.close()
    assert _flat(applied) == ["e2", "e1"]
    replayed: list = []
    again = EventInbox(tmp_path, replayed.append)
    again.wait()
    assert replayed == [] and again.status()["poisoned_batches"] == 1
    again.close()


def test_a_line_cut_by_a_crash_does_not_swallow_the_next_batch(tmp_path) -> None:
    inbox = EventInbox(tmp_path, lambda batch: None)
    inbox.accept([_event(1)])
    inbox.wait()
    inbox.close()
    with (tmp_path / "events.jsonl").open("a") as log:
        log.write('[{"event_id": "e2", "custo')  # killed mid-write, never acknowledged
    applied: list = []
    restarted = EventInbox(tmp_path, applied.append)
    assert restarted.accept([_event(3)]) == (1, 0)
    restarted.wait()
    restarted.close()
    again: list = []
    (tmp_path / "events.applied").unlink()  # replay the whole log
    EventInbox(tmp_path, again.append).wait()
    assert _ids(applied) == [["e3"]]
    assert _flat(again) == ["e1", "e3"]


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
