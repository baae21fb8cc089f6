"""Replenishment: when each customer is due to buy a product category again.

From the order lines, per (customer, category):

* **purchases**: the distinct days (UTC) with an order holding that category; returns and
  returned lines (quantity <= 0) are left out.
* **customer cycle**: the median gap in days between those days (none with one purchase).
* **category cycle**: the median of the customer cycles of everyone with two or more
  purchases of the category (its typical rebuy rhythm).
* **cycle** (what the due date uses), by how much of the customer's own rhythm there is:
  three or more purchases (two or more gaps): the customer's own cycle; two purchases
  (one gap): halfway between the customer's gap and the category cycle; one purchase: the
  category cycle. With no category cycle (nobody bought it twice) a customer's own gap
  is used alone, and a single purchase has no cycle, so no row.
* **due date** = the last purchase day + the cycle rounded to whole days; **days until
  due** counts from ``as_of``'s day (negative: overdue).
* **status**: ``due`` when due within ``within_days`` or overdue by at most one cycle;
  ``lapsed`` when overdue by more than a cycle (these belong to win-back, not here);
  ``not due`` otherwise.

Customers who opted out of profiling are left out of the rows (they still count toward a
category's typical cycle). ``as_of`` defaults to the latest order in the lake. The cycles
are computed in DuckDB and kept by :class:`ReplenishmentCache` per lake version.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import numpy as np
import pandas as pd

from kizuna.features.compute_sql import timestamp_literal
from kizuna.features.ingest import connect
from kizuna.features.lake import Lake
from kizuna.settings import Settings

log = logging.getLogger(__name__)

DUE_WITHIN_DAYS = 14
# Purchases of a category from which a customer's own cycle is used alone.
OWN_CYCLE_PURCHASES = 3
STATUSES = ("due", "lapsed", "not due")
COLUMNS = [
    "customer_id",
    "category",
    "purchases",
    "last_bought_at",
    "customer_cycle_days",
    "category_cycle_days",
    "cycle_days",
    "due_at",
    "days_until_due",
    "status",
    "reasons",
]

# The columns the reasons are phrased from, in _reasons' order.
_REASON_INPUTS = (
    "category",
    "purchases",
    "customer_cycle_days",
    "category_cycle_days",
    "cycle_days",
    "days_since_last",
    "days_until_due",
)


class CategorySummary(TypedDict):
    """One category of the filter dropdown."""

    category: str
    customers: int  # buyers of it who allow profiling (those a list can hold)
    repeat_customers: int  # of them, with two or more purchase days
    cycle_days: float | None  # the category cycle; None when nobody bought it twice


@dataclass(frozen=True)
class Cycles:
    """Every (customer, category) cycle as of ``as_of``, before a due window is applied."""

    # COLUMNS but status, plus days_since_last; soonest due first (then customer id).
    frame: pd.DataFrame
    categories: list[CategorySummary]
    as_of: pd.Timestamp
    lake_version: int
    seconds: float


def cycles_sql(orders: str, order_lines: str, customers: str, as_of: datetime) -> str:
    """One row per (customer, category) bought by a customer who allows profiling, as of
    ``as_of``: purchases, last purchase, the three cycles (``cycle_days`` null when there
    is none), the due date and the days until it and since the last purchase."""
    at = timestamp_literal(as_of)
    own = OWN_CYCLE_PURCHASES
    return f"""
        WITH days AS (
            SELECT o.customer_id, l.category, CAST(o.ordered_at AS DATE) AS day,
                   max(o.ordered_at) AS bought_at
            FROM {order_lines} AS l JOIN {orders} AS o USING (order_id)
            WHERE NOT coalesce(o.is_return, false) AND l.quantity > 0
              AND l.category IS NOT NULL AND o.customer_id IS NOT NULL AND o.ordered_at <= {at}
            GROUP BY ALL),
        gaps AS (
            SELECT *, datediff('day', lag(day) OVER (
                PARTITION BY customer_id, category ORDER BY day), day) AS gap
            FROM days),
        own AS (
            SELECT customer_id, category, count(*) AS purchases, max(day) AS last_day,
                   max(bought_at) AS last_bought_at, median(gap) AS customer_cycle_days
            FROM gaps GROUP BY customer_id, category),
        typical AS (
            SELECT category, median(customer_cycle_days) AS category_cycle_days
            FROM own WHERE purchases >= 2 GROUP BY category),
        allowed AS (
            SELECT own.*, typical.category_cycle_days,
                   CASE WHEN purchases >= {own} OR category_cycle_days IS NULL
                            THEN customer_cycle_days
                        WHEN purchases = 2
                            THEN (customer_cycle_days + category_cycle_days) / 2
                        ELSE category_cycle_days END AS cycle_days
            FROM own LEFT JOIN typical USING (category)
            WHERE customer_id NOT IN (SELECT customer_id FROM {customers} AS c
                                      WHERE c.consent_profiling = false))
        SELECT customer_id, category, purchases, last_bought_at, customer_cycle_days,
               category_cycle_days, cycle_days,
               CAST(last_day + CAST(round(cycle_days) AS INTEGER) AS TIMESTAMPTZ) AS due_at,
               datediff('day', CAST({at} AS DATE),
                        last_day + CAST(round(cycle_days) AS INTEGER)) AS days_until_due,
               datediff('day', last_day, CAST({at} AS DATE)) AS days_since_last
        FROM allowed ORDER BY category, customer_id"""


def _summaries(rows: pd.DataFrame) -> list[CategorySummary]:
    """Per category: buyers who allow profiling, repeat buyers among them, the cycle."""
    grouped = rows.groupby("category", sort=True).agg(
        customers=("customer_id", "size"),
        repeat_customers=("purchases", lambda p: int((p >= 2).sum())),
        cycle_days=("category_cycle_days", "first"),
    )
    grouped = grouped.sort_values("customers", ascending=False, kind="stable")
    return [
        CategorySummary(
            category=str(category),
            customers=int(r.customers),
            repeat_customers=int(r.repeat_customers),
            cycle_days=None if pd.isna(r.cycle_days) else float(r.cycle_days),
        )
        for category, r in grouped.iterrows()
    ]


def compute_cycles(settings: Settings, as_of: datetime | None = None) -> Cycles:
    """Every (customer, category) cycle of the lake, as of ``as_of`` (default: the latest
    order in the lake; with no order, no rows)."""
    started = time.perf_counter()
    lake = Lake(settings)
    version = lake.manifest().version
    orders = lake.relation_sql("orders")
    con = connect(settings)
    try:
        if as_of is None:
            (as_of,) = con.execute(f"SELECT max(ordered_at) FROM {orders}").fetchone()
        at = None if as_of is None else _utc(as_of)
        if at is None:  # no orders yet
            rows = pd.DataFrame(columns=[*COLUMNS[:9], "days_since_last"])
        else:
            sql = cycles_sql(
                orders,
                lake.relation_sql("order_lines"),
                lake.relation_sql("customers"),
                at.to_pydatetime(),
            )
            rows = con.execute(sql).df()
    finally:
        con.close()
    for column in ("last_bought_at", "due_at"):
        rows[column] = pd.to_datetime(rows[column], utc=True)
    summaries = _summaries(rows)
    frame = rows[rows["cycle_days"].notna()]
    frame = frame.astype({"purchases": "int64", "days_until_due": "int64"})
    frame = frame.sort_values(["days_until_due", "customer_id"], kind="stable", ignore_index=True)
    # The reasons do not depend on the due window: phrased once per lake version.
    inputs = (frame[c].to_numpy() for c in _REASON_INPUTS)
    frame["reasons"] = [_reasons(*values) for values in zip(*inputs, strict=True)]
    seconds = time.perf_counter() - started
    log.info("computed %d category cycles in %.2f s", len(frame), seconds)
    return Cycles(frame, summaries, at, version, seconds)


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _days(n: float) -> str:
    whole = math.floor(n + 0.5)  # as the due date rounds (half up), not to even
    return "day" if whole == 1 else f"{whole} days"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _cycle_reason(category: str, purchases: int, own: float, typical: float) -> str:
    if purchases >= OWN_CYCLE_PURCHASES or (purchases == 2 and pd.isna(typical)):
        return f"buys {category} about every {_days(own)} ({_times(purchases)} so far)"
    usual = f"{category} buyers rebuy about every {_days(typical)}"
    if purchases == 2:
        return f"bought {category} twice, {_days(own)} apart; {usual}"
    return f"bought {category} once; {usual}"


def _since_reason(category: str, days: int) -> str:
    if days <= 0:
        return f"bought {category} today"
    if days == 1:
        return f"last bought {category} yesterday"
    return f"last bought {category} {days} days ago"


def _due_reason(days: int, lapsed: bool) -> str:
    if days > 1:
        return f"due in {days} days"
    if days == 1:
        return "due tomorrow"
    if days == 0:
        return "due today"
    late = "overdue by 1 day" if days == -1 else f"overdue by {-days} days"
    return f"{late}, more than a full cycle" if lapsed else late


def _reasons(category, purchases, own, typical, cycle, since, until) -> list[str]:
    return [
        _cycle_reason(category, int(purchases), own, typical),
        _since_reason(category, int(since)),
        _due_reason(int(until), lapsed=-until > cycle),
    ]


def timing_reasons(row: Mapping[str, Any]) -> list[str]:
    """Why a (customer, category) row is timed as it is, in a marketer's words: its
    rhythm, its last purchase and its due date (a row of :attr:`Cycles.frame`)."""
    return _reasons(*(row[c] for c in _REASON_INPUTS))


def _cycles_of(source: Settings | Cycles) -> Cycles:
    return source if isinstance(source, Cycles) else compute_cycles(source)


def replenishment(
    source: Settings | Cycles,
    category: str | None = None,
    within_days: int = DUE_WITHIN_DAYS,
) -> pd.DataFrame:
    """Every (customer, category) with a cycle, its status and the reasons; soonest first.

    Args:
        source: the cycles (``ReplenishmentCache().get(settings)``), or settings to
            compute them from now.
        category: keep only this category (case-insensitive); None keeps all. An unknown
            category gives no rows.
        within_days: ``due`` means due within this many days, or overdue by at most one
            cycle.

    Returns:
        :data:`COLUMNS`, sorted by ``days_until_due`` then ``customer_id``;
        ``attrs["as_of"]`` is the moment the days are counted from.
    """
    if within_days < 0:
        raise ValueError(f"within_days must be 0 or more, got {within_days}")
    cycles = _cycles_of(source)
    rows = cycles.frame
    if category is not None:
        rows = rows[rows["category"].str.casefold() == category.casefold()]
    until, cycle = rows["days_until_due"].to_numpy(), rows["cycle_days"].to_numpy()
    lapsed = -until > cycle
    status = np.where(lapsed, "lapsed", np.where(until <= within_days, "due", "not due"))
    out = rows.reindex(columns=COLUMNS)  # a copy, already in order
    out["status"] = status
    out = out.reset_index(drop=True)
    out.attrs["as_of"] = cycles.as_of
    return out


def categories(source: Settings | Cycles) -> list[CategorySummary]:
    """The categories bought, most buyers first, each with its buyers and its cycle."""
    return list(_cycles_of(source).categories)


class ReplenishmentCache:
    """The lake's category cycles, recomputed only when the lake's version changes
    (thread-safe; one computation at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int] | None = None
        self._cycles: Cycles | None = None

    def get(self, settings: Settings) -> Cycles:
        """The cycles of the lake as it is now, as of its latest order."""
        key = (str(settings.home_dir), Lake(settings).manifest().version)
        with self._lock:
            if self._cycles is None or self._key != key:
                self._cycles, self._key = compute_cycles(settings), key
            return self._cycles


def lookup(cycles: Cycles):
    """``(category, within_days) -> due rows`` over ``cycles``, as the lists take it; its
    ``source`` is the cycles (the lists' sorted-rows cache keys on it)."""

    def of(category: str | None, within_days: int) -> pd.DataFrame:
        return replenishment(cycles, category=category, within_days=within_days)

    of.source = cycles
    return of
