"""POST /v1/events: acknowledged events are durable, applied once, and reach the scores.

An accepted batch is appended to a write-ahead log (``$KIZUNA_HOME/serving/events.jsonl``)
and synced to disk before the API answers 202; an event id seen before is a duplicate and
is not logged again. A worker thread then applies each batch: the lake (the validated,
idempotent ingest of kizuna.features.realtime), the touched customers' features (pushed to
the online store) and their scores in the book. How many log lines have been applied is
kept beside the log, so after a crash the unapplied tail is replayed at start-up; replaying
an applied batch changes nothing, because the ingest is idempotent too. A failing batch is
retried in place (nothing after it goes first) and, if it never succeeds, moved aside with
its reason (``events.poison.jsonl``), never silently skipped.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kizuna.features.contracts import PROFILE_CHANGES, PROFILE_FIELDS

log = logging.getLogger(__name__)

PURCHASE = "purchase"
PROFILE_CHANGE = "profile_change"
# The pandas type of each field a profile change can carry (a flag or a text).
PROFILE_DTYPES = {
    c.name: "boolean" if c.type == "bool" else "string"
    for c in PROFILE_CHANGES.columns
    if c.name in PROFILE_FIELDS
}


def to_contract_frames(events: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """API events as the lake's ``orders`` (purchases), ``events`` (engagement) and
    ``profile_changes`` (consent, tier or country changes) rows."""
    purchases = [e for e in events if e["type"] == PURCHASE]
    changes = [e for e in events if e["type"] == PROFILE_CHANGE]
    engagement = [e for e in events if e["type"] not in (PURCHASE, PROFILE_CHANGE)]
    frames: dict[str, pd.DataFrame] = {}
    if changes:
        frames["profile_changes"] = pd.DataFrame(
            {
                "change_id": [e["event_id"] for e in changes],
                "customer_id": [e["customer_id"] for e in changes],
                "changed_at": pd.to_datetime([e["occurred_at"] for e in changes], utc=True),
                **{
                    f: pd.array([(e.get("changes") or {}).get(f) for e in changes], dtype=dtype)
                    for f, dtype in PROFILE_DTYPES.items()
                },
                "source": "api",
            }
        )
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
#: Seconds between the attempts at one batch before it is moved aside as poison.
RETRY_DELAYS = (0.5, 2.0, 5.0, 15.0)


class EventInbox:
    """The write-ahead log of accepted events and the worker that applies them, in order.

    A batch that fails is retried (``retry_delays``); nothing after it is applied until it
    succeeds, so the applied-up-to marker never passes a batch that was not applied. One
    that still fails after every retry is *poison*: it is copied with its reason to
    ``events.poison.jsonl``, counted in ``/readyz`` and the metrics, and only then passed;
    its event ids are released, so the CRM can send them again once the cause is fixed.
    Closing the inbox (or a crash) mid-retry leaves the batch unapplied: it is replayed at
    the next start.

    Args:
        folder: where ``events.jsonl``, ``events.applied`` and ``events.poison.jsonl`` live.
        apply: called by the worker thread with the events to apply (a list of event
            dicts): one accepted batch, or several that queued up, in order.
        retry_delays: seconds to wait before each retry of a failing batch.
    """

    def __init__(
        self,
        folder: Path,
        apply: Callable[[list[dict[str, Any]]], None],
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "events.jsonl"
        self.marker = folder / "events.applied"
        self.poison_path = folder / "events.poison.jsonl"
        self._apply = apply
        self._delays = retry_delays
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._halted = False  # a failing batch was left for the next start
        self._queue: queue.Queue[tuple[int, list[dict[str, Any]]] | None] = queue.Queue()
        self._seen: set[str] = set()
        self._lines = 0
        self.failures = 0  # failed attempts (each retry counts)
        self.pending = 0  # events acknowledged and not yet applied
        self.poisoned = self._poisoned_lines()
        self.last_error: str | None = None
        self._replay()
        self._worker = threading.Thread(target=self._run, name="kizuna-events", daemon=True)
        self._worker.start()

    def _applied(self) -> int:
        return int(self.marker.read_text() or 0) if self.marker.exists() else 0

    def _poisoned_lines(self) -> dict[int, str]:
        """Log line -> reason of every batch moved aside."""
        if not self.poison_path.exists():
            return {}
        out = {}
        for line in self.poison_path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # cut by a crash: its batch is replayed, and poisoned again
            out[int(record["line"])] = record["reason"]
        return out

    def _drop_cut_tail(self) -> None:
        """A crash while writing leaves a line without its newline; it was never
        acknowledged (the answer waits for the sync), and the next append must not glue
        an acknowledged batch onto it."""
        with self.path.open("rb+") as log_file:
            data = log_file.read()
            if data and not data.endswith(b"\n"):
                log_file.truncate(data.rfind(b"\n") + 1)
                log_file.flush()
                os.fsync(log_file.fileno())

    def _replay(self) -> None:
        """Remember every logged id; queue the batches logged but not yet applied."""
        if not self.path.exists():
            return
        self._drop_cut_tail()
        applied = self._applied()
        with self.path.open() as lines:
            for number, line in enumerate(lines, start=1):
                self._lines = number
                if number in self.poisoned:
                    continue  # moved aside: its ids may be sent again
                try:
                    batch = json.loads(line)
                except json.JSONDecodeError:  # only an older Kizuna could leave one
                    log.error("line %d of %s is not JSON; its events are lost", number, self.path)
                    continue
                self._seen.update(e["event_id"] for e in batch)
                if number > applied:
                    self._queue.put((number, batch))
                    self.pending += len(batch)

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
                self.pending += len(fresh)
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
                if batches and not self._halted:
                    self._apply_in_order(batches)
            finally:
                for _ in items:
                    self._queue.task_done()
            if len(batches) < len(items):
                return

    def _apply_in_order(self, batches: list[tuple[int, list[dict[str, Any]]]]) -> None:
        """Apply the batches together; if that fails, one by one, each retried until it
        succeeds or is moved aside, so no later batch is applied before an earlier one."""
        if self._attempt(batches):
            return
        for batch in batches:
            if len(batches) > 1 and self._attempt([batch]):  # a lone one just failed
                continue
            for delay in self._delays:
                if self._stopping.wait(delay):
                    self._halted = True  # closing: this and every later batch are
                    return  # replayed at the next start, in order
                if self._attempt([batch]):
                    break
            else:
                self._move_aside(*batch)

    def _attempt(self, batches: list[tuple[int, list[dict[str, Any]]]]) -> bool:
        numbers = [number for number, _ in batches]
        try:
            self._apply([event for _, batch in batches for event in batch])
        except Exception as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "could not apply %d batch(es) of events (log lines %d-%d); retrying",
                len(batches),
                numbers[0],
                numbers[-1],
            )
            return False
        self._mark(numbers[-1])
        self.pending -= sum(len(batch) for _, batch in batches)
        return True

    def _mark(self, number: int) -> None:
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(str(number))
        os.replace(tmp, self.marker)

    def _move_aside(self, number: int, batch: list[dict[str, Any]]) -> None:
        reason = self.last_error or "unknown error"
        record = {
            "line": number,
            "reason": reason,
            "attempts": len(self._delays) + 1,
            "moved_at": datetime.now(UTC).isoformat(),
            "events": batch,
        }
        with self.poison_path.open("a") as out:
            out.write(json.dumps(record, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())
        log.error(
            "moved the batch at log line %d (%d events) aside to %s after %d attempts: %s; "
            "fix the cause and send its events again",
            number,
            len(batch),
            self.poison_path,
            record["attempts"],
            reason,
        )
        with self._lock:
            self.poisoned[number] = reason
            self._seen.difference_update(e["event_id"] for e in batch)
        self._mark(number)
        self.pending -= len(batch)

    def status(self) -> dict[str, Any]:
        """What /readyz shows of the inbox."""
        return {
            "pending": self.pending,
            "failed_attempts": self.failures,
            "poisoned_batches": len(self.poisoned),
            "poison_file": str(self.poison_path) if self.poisoned else None,
            "last_error": self.last_error,
        }

    def wait(self) -> None:
        """Block until every queued batch has been applied (or moved aside)."""
        self._queue.join()

    def close(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        self._worker.join(timeout=30)
