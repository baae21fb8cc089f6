"""Prometheus metrics: request latency per route, scores served, model versions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
LATENCY = Histogram(
    "kizuna_request_seconds",
    "Time to answer a request, by route and status.",
    ["route", "method", "status"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
    registry=REGISTRY,
)
SCORES_SERVED = Counter(
    "kizuna_scores_served", "Customer scores returned by /v1/scores.", registry=REGISTRY
)
MODEL_VERSION = Gauge(
    "kizuna_model_version",
    "Registered version of each served champion (0: the model has none).",
    ["model"],
    registry=REGISTRY,
)
CUSTOMERS_SCORED = Gauge(
    "kizuna_customers_in_book", "Customers with precomputed scores.", registry=REGISTRY
)
EVENTS_PENDING = Gauge(
    "kizuna_events_pending",
    "Events acknowledged (202) and not yet applied to the lake, features and scores.",
    registry=REGISTRY,
)
EVENTS_POISONED = Gauge(
    "kizuna_events_poisoned_batches",
    "Event batches moved aside to events.poison.jsonl after every retry failed.",
    registry=REGISTRY,
)
EVENTS_FAILED_ATTEMPTS = Gauge(
    "kizuna_events_failed_attempts",
    "Failed attempts at applying event batches since the server started (retries count).",
    registry=REGISTRY,
)


def watch_inbox(inbox) -> None:
    """Read the inbox's counts at each scrape."""
    EVENTS_PENDING.set_function(lambda: inbox.pending)
    EVENTS_POISONED.set_function(lambda: len(inbox.poisoned))
    EVENTS_FAILED_ATTEMPTS.set_function(lambda: inbox.failures)
