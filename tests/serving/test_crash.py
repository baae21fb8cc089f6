"""No acknowledged event is lost or applied twice when the server is killed (kill -9).

Five rounds on a copy of the trained home: start `kizuna serve`, stream event batches
from a separate process (which records every batch the server acknowledged with a 202, and
re-sends some), kill -9 the server mid-stream, and start it again. After the last start
has applied its inbox, every acknowledged event id is in the lake exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from kizuna.features.ingest import connect
from kizuna.features.lake import Lake
from kizuna.serving.keys import KeyStore
from tests.serving.conftest import free_port, own_copy, start, wait_ready

pytestmark = pytest.mark.slow

ROUNDS = 5

# The CRM side: posts batches of purchases and sessions until the server goes away,
# appending each acknowledged batch's ids to a file (synced) before sending the next.
STREAM = """
import json, os, sys, time
from datetime import UTC, datetime, timedelta
import httpx
url, key, acked, round_ = sys.argv[1:5]
customers = sys.argv[5:]
client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
now = datetime.now(UTC)
previous = None
with open(acked, "a") as out:
    for n in range(10_000):
        events = []
        for i in range(20):
            customer = customers[(n * 20 + i) % len(customers)]
            at = (now - timedelta(minutes=30 - (i % 20))).isoformat()
            event = {"event_id": f"crash-{round_}-{n}-{i}", "customer_id": customer,
                     "occurred_at": at}
            if i % 4 == 0:
                event.update(type="purchase", amount=12.5 + i)
            else:
                event.update(type="session")
            events.append(event)
        batch = previous if (previous and n % 5 == 0) else events
        try:
            response = client.post("/v1/events", json={"events": batch})
        except httpx.HTTPError:
            break
        if response.status_code != 202:
            print("unexpected", response.status_code, response.text, file=sys.stderr)
            sys.exit(3)
        out.write(json.dumps([e["event_id"] for e in batch]) + "\\n")
        out.flush()
        os.fsync(out.fileno())
        previous = events
        time.sleep(0.02)
"""


def _lake_ids(home) -> dict[str, int]:
    lake, con = Lake(home), connect(home)
    counts: dict[str, int] = {}
    for kind, column in (("events", "event_id"), ("orders", "order_id")):
        rows = con.execute(
            f"SELECT {column}, count(*) FROM {lake.relation_sql(kind)} "
            f"WHERE {column} LIKE 'crash-%' GROUP BY 1"
        ).fetchall()
        counts.update(dict(rows))
    return counts


def test_kill_9_mid_stream_five_times_loses_and_doubles_no_acknowledged_event(
    trained_home, tmp_path
) -> None:
    home = own_copy(trained_home, tmp_path)
    key = KeyStore(home).create("crash-crm", ("events",))
    customers = (
        connect(home)
        .execute(f"SELECT customer_id FROM {Lake(home).relation_sql('customers')} LIMIT 40")
        .df()["customer_id"]
        .tolist()
    )
    acked = tmp_path / "acked.jsonl"
    acked.touch()
    for round_ in range(ROUNDS):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start(home, port)
        try:
            wait_ready(url, server)
            stream = subprocess.Popen(
                [sys.executable, "-c", STREAM, url, key, str(acked), str(round_), *customers],
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.5 + 0.5 * round_)  # mid-stream, with batches still being applied
            pending = httpx.get(f"{url}/readyz").json()["events"]["pending"]
            server.send_signal(signal.SIGKILL)
            server.wait(timeout=30)
            assert stream.wait(timeout=60) == 0, stream.stderr.read()
        finally:
            if server.poll() is None:
                server.kill()
        sent = acked.read_text().splitlines()
        assert len(sent) > 5 * (round_ + 1), "the stream barely started before the kill"
        print(f"round {round_}: {len(sent)} batches acknowledged, {pending} events pending")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(home, port)
    try:
        wait_ready(url, server)
        deadline = time.monotonic() + 180
        while (events := httpx.get(f"{url}/readyz").json()["events"])["pending"]:
            assert time.monotonic() < deadline, events
            time.sleep(0.5)
        assert events["poisoned_batches"] == 0, events
    finally:
        server.terminate()
        server.wait(timeout=30)

    acknowledged = {i for line in acked.read_text().splitlines() for i in json.loads(line)}
    in_lake = _lake_ids(home)
    assert len(acknowledged) > 500
    missing = acknowledged - set(in_lake)
    assert not missing, f"{len(missing)} acknowledged events lost, e.g. {sorted(missing)[:5]}"
    doubled = {i: n for i, n in in_lake.items() if n != 1}
    assert not doubled, f"applied more than once: {dict(list(doubled.items())[:5])}"
