"""Closed-loop HTTP load from separate client processes, one keep-alive connection each.

Each client process sends its requests back to back over one persistent
``http.client.HTTPConnection`` (little client overhead), warms up until a moment shared by
all clients, then records the latency of every request that starts and ends inside the
measuring window. Throughput is the requests finished in the window over its length.

Clients draw customers with ``random.Random(seed * 1000 + client)``, so two servers asked
with the same seed see the same customers in the same order.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import random
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Bodies a client prepares before it starts and then cycles through.
BODIES_PER_CLIENT = 4_096


@dataclass(frozen=True)
class Target:
    """One kind of request: where it goes and how a body is made from customer ids."""

    port: int
    path: str
    encode: Callable[[list[str]], bytes]
    customers_per_request: int = 1
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Result:
    """Latencies (seconds) of the requests measured, and what went wrong."""

    latencies: np.ndarray
    seconds: float
    errors: int
    first_error: str

    @property
    def requests_per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if len(self.latencies) else 0.0


def _bodies(target: Target, customers: Sequence[str], seed: int, client: int) -> list[bytes]:
    rng = random.Random(seed * 1000 + client)
    n = min(BODIES_PER_CLIENT, max(64, 200_000 // target.customers_per_request))
    return [target.encode(rng.choices(customers, k=target.customers_per_request)) for _ in range(n)]


def _client(
    target: Target,
    customers: Sequence[str],
    seed: int,
    client: int,
    start: float,
    stop: float,
    out: mp.Queue,
) -> None:
    bodies = _bodies(target, customers, seed, client)
    headers = {"Content-Type": "application/json", **dict(target.headers)}
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
    latencies = array("d")
    errors, first_error, i = 0, "", 0
    clock = time.perf_counter  # CLOCK_MONOTONIC on Linux: shared by every process
    while True:
        began = clock()
        if began >= stop:
            break
        body = bodies[i % len(bodies)]
        i += 1
        try:
            conn.request("POST", target.path, body, headers)
            response = conn.getresponse()
            data = response.read()
            status = response.status
        except (http.client.HTTPException, OSError) as exc:
            conn.close()  # the server dropped the connection; open a new one
            conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
            status, data = 0, repr(exc).encode()
        ended = clock()
        if status != 200:
            errors += 1
            first_error = first_error or f"HTTP {status}: {data[:300].decode(errors='replace')}"
        elif began >= start and ended <= stop:
            latencies.append(ended - began)
    conn.close()
    out.put((latencies.tobytes(), errors, first_error))


def drive(
    target: Target,
    customers: Sequence[str],
    clients: int,
    warmup: float,
    duration: float,
    seed: int,
) -> Result:
    """Run ``clients`` processes against ``target``; measure ``duration`` s after ``warmup`` s."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    # Forking and preparing bodies takes well under a second; the warm-up absorbs it.
    start = time.perf_counter() + warmup
    stop = start + duration
    procs = [
        ctx.Process(
            target=_client,
            args=(target, customers, seed, c, start, stop, out),
            daemon=True,
        )
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    try:
        parts = [out.get(timeout=warmup + duration + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    latencies = np.concatenate([np.frombuffer(raw, dtype="d") for raw, _, _ in parts])
    errors = sum(e for _, e, _ in parts)
    first = next((f for _, _, f in parts if f), "")
    return Result(latencies, duration, errors, first)
