"""POST /v1/events: acknowledged events are durable, applied once, and reach the scores.

An accepted batch is appended to a write-ahead log (``$KIZUNA_HOME/serving/events.jsonl``)
and synced to disk before the API answers 202; an event id seen before is a duplicate and
is not logged again. A worker thread then applies each batch: the lake (the validated,
idempotent ingest of kizuna.features.realtime), the touched customers' features (pushed to
the online store) and their scores in the book. How many log lines have been applied is
kept beside the log, so after a crash the unapplied tail is replayed at start-up; replaying
an applied batch changes nothing, because the ingest is idempotent too.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

PURCHASE = "purchase"


def to_contract_frames(events: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """API events as the lake's ``orders`` (purchases) and ``events`` (engagement) rows."""
    purchases = [e for e in events if e["type"] == PURCHASE]
    engagement = [e for e in events if e["type"] != PURCHASE]
    frames: dict[str, pd.DataFrame] = {}
    if purchases:
        frames["orders"] = pd.DataFrame(
            {
                "order_id": [e["event_id"] for e in purchases],
                "customer_id": [e["customer_id"] for e in purchases],
                "ordered_at": pd.to_datetime([e["occurred_at"] for e in purchases], utc=True),
                "amount": [float(e["amount"]) for e in purchases],
            }
        )
    if engagement:
        frames["events"] = pd.DataFrame(
            {
                "event_id": [e["event_id"] for e in engagement],
                "customer_id": [e["customer_id"] for e in engagement],
                "occurred_at": pd.to_datetime([e["occurred_at"] for e in engagement], utc=True),
                "type": [e["type"] for e in engagement],
                "value": [e.get("value") for e in engagement],
                "channel": [e.get("channel") for e in engagement],
            }
        )
    return frames


# The most events applied in one pass when batches queue up.
MAX_EVENTS_PER_APPLY = 10_000


class EventInbox:
    """The write-ahead log of accepted events and the worker that applies them.

    Args:
        folder: where ``events.jsonl`` and ``events.applied`` live.
        apply: called by the worker thread with the events to apply (a list of event
            dicts): one accepted batch, or several that queued up, in order.
    """

    def __init__(self, folder: Path, apply: Callable[[list[dict[str, Any]]], None]) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "events.jsonl"
        self.marker = folder / "events.applied"
        self._apply = apply
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, list[dict[str, Any]]] | None] = queue.Queue()
        self._seen: set[str] = set()
        self._lines = 0
        self.failures = 0
        self._replay()
        self._worker = threading.Thread(target=self._run, name="kizuna-events", daemon=True)
        self._worker.start()

    def _applied(self) -> int:
        return int(self.marker.read_text() or 0) if self.marker.exists() else 0

    def _replay(self) -> None:
        """Remember every logged id; queue the batches logged but not yet applied."""
        if not self.path.exists():
            return
        applied = self._applied()
        with self.path.open() as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    batch = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a crash before it was acknowledged
                self._seen.update(e["event_id"] for e in batch)
                self._lines = number
                if number > applied:
                    self._queue.put((number, batch))

    def accept(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Log the new events durably and queue them; returns (accepted, duplicates)."""
        with self._lock:
            fresh, ids = [], set()
            for event in events:
                if event["event_id"] in self._seen or event["event_id"] in ids:
                    continue
                ids.add(event["event_id"])
                fresh.append(event)
            if fresh:
                with self.path.open("a") as out:
                    out.write(json.dumps(fresh, default=str) + "\n")
                    out.flush()
                    os.fsync(out.fileno())
                self._seen.update(ids)
                self._lines += 1
                self._queue.put((self._lines, fresh))
        return len(fresh), len(events) - len(fresh)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            items = [first]
            # Batches that queued up while the last one was applied go in one pass: the
            # rescoring costs about the same for one customer as for thousands.
            events = 0 if first is None else len(first[1])
            while first is not None and events < MAX_EVENTS_PER_APPLY:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                items.append(item)
                if item is None:
                    break
                events += len(item[1])
            batches = [item for item in items if item is not None]
            try:
                if batches:
                    self._apply_batches(batches)
            finally:
                for _ in items:
                    self._queue.task_done()
            if len(batches) < len(items):
                return

    def _apply_batches(self, batches: list[tuple[int, list[dict[str, Any]]]]) -> None:
        numbers = [number for number, _ in batches]
        try:
            self._apply([event for _, batch in batches for event in batch])
        except Exception:  # kept in the log; replayed at the next start
            self.failures += 1
            log.exception(
                "could not apply %d batches of events (log lines %d-%d)",
                len(batches),
                numbers[0],
                numbers[-1],
            )
        else:
            tmp = self.marker.with_suffix(".tmp")
            tmp.write_text(str(numbers[-1]))
            os.replace(tmp, self.marker)

    def wait(self) -> None:
        """Block until every queued batch has been applied (or has failed)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=30)
