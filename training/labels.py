"""Labels: what happened after each cutoff, from the lake, in DuckDB.

Every label of a (customer, cutoff) row uses only data *after* the cutoff; features use
only data at or before it (kizuna.features.compute). Definitions follow DESIGN.md:

* churn: no purchase in (t, t + H]. ``H`` defaults to a high percentile of the gaps
  between a customer's consecutive purchase days (:func:`default_churn_horizon`) and is
  recorded with the model. A row whose window runs past the end of the data is not
  labelled (its outcome is unknown), never labelled "churned".
* repurchase timing: days from t to the next purchase, right-censored at the end of the
  data (``event = False`` with the days observed), not dropped.
* value: money spent on orders in (t, t + 365 days], net of returns; rows whose year runs
  past the end of the data are not labelled.
* offer response: a purchase within N days after an exposure, for treated and control
  exposures alike, so uplift = P(buy | offer) - P(buy | control).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from kizuna.features.compute import Tables

DAY_SECONDS = 86_400


class LabelError(ValueError):
    """Labels cannot be made as asked; the message says why and what to change."""


@dataclass(frozen=True)
class ChurnHorizon:
    """The churn window H and where it came from."""

    days: int
    percentile: float
    gaps: int


def _entities_sql(cutoffs: Sequence[datetime]) -> str:
    values = ", ".join(f"(TIMESTAMPTZ '{c.isoformat()}')" for c in cutoffs)
    return f"(SELECT * FROM (VALUES {values}) AS v(cutoff))"


def data_end(con: duckdb.DuckDBPyConnection, tables: Tables) -> datetime:
    """The last moment the data covers: the latest order or event."""
    end = con.execute(
        f"SELECT greatest((SELECT max(ordered_at) FROM {tables.orders}), "
        f"(SELECT max(occurred_at) FROM {tables.events}))"
    ).fetchone()[0]
    if end is None:
        raise LabelError("the lake has no orders or events; ingest data first")
    return end


def default_churn_horizon(
    con: duckdb.DuckDBPyConnection, tables: Tables, percentile: float = 0.9
) -> ChurnHorizon:
    """H from the data: the ``percentile`` of gaps between consecutive purchase days.

    A customer who has not bought within H days of a cutoff has waited longer than 90% of
    observed repeat gaps, which is what "stopped buying" means without a contract.
    """
    days, gaps = con.execute(
        f"""WITH purchase_days AS (
                SELECT DISTINCT customer_id, date_trunc('day', ordered_at) AS day
                FROM {tables.orders} WHERE NOT coalesce(is_return, false)),
            gaps AS (
                SELECT date_diff('day', lag(day) OVER (PARTITION BY customer_id ORDER BY day),
                                 day) AS gap FROM purchase_days)
            SELECT quantile_cont(gap, {percentile}), count(gap) FROM gaps WHERE gap IS NOT NULL"""
    ).fetchone()
    if not gaps:
        raise LabelError("no customer bought twice: pass the churn horizon explicitly")
    return ChurnHorizon(days=max(1, round(days)), percentile=percentile, gaps=int(gaps))


def outcome_frame(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoffs: Sequence[datetime],
    churn_horizon_days: int,
    value_days: int = 365,
    truncate: bool = False,
) -> pd.DataFrame:
    """Churn, time-to-next-purchase and value labels per (customer, cutoff).

    The population at t is every customer with an order at or before t (a customer who
    never bought cannot stop buying). Columns: ``customer_id``, ``event_timestamp`` (the
    cutoff), ``churned`` (nullable boolean: null when (t, t+H] runs past the data),
    ``days_to_next_purchase`` and ``repurchased`` (false = censored at the end of the data),
    ``observed_days`` (how long the data run after the cutoff),
    ``future_value`` (spend in the next ``value_days``; null when they run past the data),
    ``future_purchase_days`` (distinct purchase days in that window), and the windows the
    labels looked at, ``label_window_days`` (churn) and ``value_window_days``.

    With ``truncate`` a window that runs past the end of the data is cut at the end
    instead of left unlabelled (a cutoff 30 days before the end gets a 30-day churn label
    "no purchase in the 30 days there are"), and the window columns say how long each
    row's was: the expanding-window scheme of short histories, where no full window of
    the horizon fits (kizuna.training.dataset.time_split).
    """
    if not cutoffs:
        raise LabelError("give at least one cutoff")
    end = data_end(con, tables)
    if min(cutoffs) >= end:
        raise LabelError(f"every cutoff is at or after the end of the data ({end:%Y-%m-%d})")
    # Windows in whole microseconds, so a window truncated at the end ends exactly there.
    windows, day_us = [], DAY_SECONDS * 1_000_000
    for c in sorted(set(cutoffs)):
        left = max(0, (end - c) // timedelta(microseconds=1))
        churn_us, value_us = churn_horizon_days * day_us, value_days * day_us
        if truncate:
            churn_us, value_us = min(churn_us, left), min(value_us, left)
        windows.append(f"(TIMESTAMPTZ '{c.isoformat()}', {churn_us}, {value_us})")
    cut = f"(SELECT * FROM (VALUES {', '.join(windows)}) AS v(cutoff, churn_us, value_us))"
    orders = f"(SELECT * FROM {tables.orders} WHERE NOT coalesce(is_return, false))"
    churn_end = "p.cutoff + to_microseconds(p.churn_us)"
    value_end = "p.cutoff + to_microseconds(p.value_us)"
    frame = con.execute(
        f"""WITH cut AS {cut},
            population AS (
                SELECT DISTINCT o.customer_id, c.cutoff, c.churn_us, c.value_us
                FROM {orders} o JOIN cut c ON o.ordered_at <= c.cutoff),
            next_order AS (
                SELECT p.customer_id, p.cutoff, min(o.ordered_at) AS next_at
                FROM population p JOIN {orders} o
                  ON o.customer_id = p.customer_id AND o.ordered_at > p.cutoff
                GROUP BY ALL),
            value AS (
                SELECT p.customer_id, p.cutoff, sum(o.amount) AS spend,
                       count(DISTINCT CAST(timezone('UTC', o.ordered_at) AS DATE))
                           FILTER (WHERE NOT coalesce(o.is_return, false)) AS purchase_days
                FROM population p JOIN {tables.orders} o
                  ON o.customer_id = p.customer_id AND o.ordered_at > p.cutoff
                 AND o.ordered_at <= {value_end}
                GROUP BY ALL)
            SELECT p.customer_id, p.cutoff AS event_timestamp,
                   CASE WHEN p.churn_us <= 0 THEN NULL
                        WHEN n.next_at <= {churn_end} THEN false
                        WHEN {churn_end} <= $end THEN true
                        END AS churned,
                   n.next_at IS NOT NULL AS repurchased,
                   epoch(coalesce(n.next_at, $end) - p.cutoff) / {DAY_SECONDS}
                       AS days_to_next_purchase,
                   epoch($end - p.cutoff) / {DAY_SECONDS} AS observed_days,
                   CASE WHEN p.value_us > 0 AND {value_end} <= $end
                        THEN coalesce(v.spend, 0) END AS future_value,
                   CASE WHEN p.value_us > 0 AND {value_end} <= $end
                        THEN coalesce(v.purchase_days, 0) END AS future_purchase_days,
                   p.churn_us / {day_us} AS label_window_days,
                   p.value_us / {day_us} AS value_window_days
            FROM population p
            LEFT JOIN next_order n USING (customer_id, cutoff)
            LEFT JOIN value v USING (customer_id, cutoff)
            ORDER BY event_timestamp, customer_id""",
        {"end": end},
    ).df()
    frame["churned"] = frame["churned"].astype("boolean")
    return frame


#: Days since signup that separate the cold-start groups (a week-old sign-up and a year-old
#: one that never bought are different customers).
SIGNUP_AGE_EDGES = (0, 30, 90, 180, 365)


def never_buyer_value(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    cutoffs: Sequence[datetime],
    value_days: int,
    latest: int | None = 4,
) -> pd.DataFrame:
    """What customers without an order spend next, by how long ago they signed up.

    Every customer known at t (a customers row signed up by t) with no order by t, over
    the ``latest`` cutoffs whose (t, t + value_days] window has closed (all with None):
    the latest, because early in an export "no order yet" also means "no order in the
    data yet", and those customers spend like regulars. One row per signup-age group
    (``from_days``: the group's lower edge in :data:`SIGNUP_AGE_EDGES`) with ``spend`` (the
    mean spend in the window, returns netted) and ``rows`` ((customer, cutoff) pairs).
    Empty when no window has closed or nobody qualifies.

    The value model's population is customers who bought; this is its honest answer for
    a customer with no order yet (a cold start), in place of an extrapolation from zero.
    """
    end = data_end(con, tables)
    closed = sorted(c for c in cutoffs if c + timedelta(days=value_days) <= end)
    if latest:
        closed = closed[-latest:]
    if not closed:
        return pd.DataFrame({"from_days": [], "spend": [], "rows": []})
    edges = ", ".join(str(e) for e in SIGNUP_AGE_EDGES)
    return con.execute(
        f"""WITH cut AS {_entities_sql(closed)},
            known AS (
                SELECT s.customer_id, c.cutoff,
                       date_diff('day', min(s.signup_at), c.cutoff) AS age
                FROM {tables.customers} s JOIN cut c ON s.signup_at <= c.cutoff
                WHERE NOT EXISTS (SELECT 1 FROM {tables.orders} o
                                  WHERE o.customer_id = s.customer_id
                                    AND o.ordered_at <= c.cutoff)
                GROUP BY s.customer_id, c.cutoff),
            spend AS (
                SELECT k.customer_id, k.cutoff, sum(o.amount) AS spend
                FROM known k JOIN {tables.orders} o
                  ON o.customer_id = k.customer_id AND o.ordered_at > k.cutoff
                 AND o.ordered_at <= k.cutoff + INTERVAL {value_days} DAY
                GROUP BY ALL)
            SELECT list_reverse([e FOR e IN [{edges}] IF e <= k.age])[1] AS from_days,
                   avg(coalesce(v.spend, 0)) AS spend, count(*) AS rows
            FROM known k LEFT JOIN spend v USING (customer_id, cutoff)
            GROUP BY 1 ORDER BY 1"""
    ).df()


def offer_response_frame(
    con: duckdb.DuckDBPyConnection, tables: Tables, window_days: int = 14
) -> pd.DataFrame:
    """One row per exposure: its arm, propensity and whether the customer bought within
    ``window_days`` after it (any order that is not a return). Control rows have no offer.
    Exposures whose window runs past the end of the data are left out.
    """
    end = data_end(con, tables)
    return con.execute(
        f"""SELECT x.exposure_id, x.customer_id, x.offer_id, x.channel, x.propensity,
                   x.sent_at AS event_timestamp,
                   EXISTS (SELECT 1 FROM {tables.orders} o
                           WHERE o.customer_id = x.customer_id
                             AND NOT coalesce(o.is_return, false)
                             AND o.ordered_at > x.sent_at
                             AND o.ordered_at <= x.sent_at + INTERVAL {window_days} DAY)
                       AS purchased
            FROM {tables.exposures} x
            WHERE x.sent_at + INTERVAL {window_days} DAY <= $end
            ORDER BY x.sent_at, x.exposure_id""",
        {"end": end},
    ).df()


def split_cutoffs(
    cutoffs: Sequence[datetime], validation: int = 1, test: int = 1
) -> tuple[list[datetime], list[datetime], list[datetime]]:
    """Time-ordered split: the latest ``test`` cutoffs, before them ``validation``, the
    rest for training. Never random: train precedes validation precedes test."""
    ordered = sorted(set(cutoffs))
    if len(ordered) < validation + test + 1:
        raise LabelError(
            f"{len(ordered)} cutoffs cannot give {validation} validation and {test} test "
            "cutoffs and at least one to train on; build more snapshots (--every 7d)"
        )
    train_end = len(ordered) - validation - test
    return (
        ordered[:train_end],
        ordered[train_end : train_end + validation],
        ordered[train_end + validation :],
    )


def gap_between(earlier: Sequence[datetime], later: Sequence[datetime]) -> timedelta:
    """How far the last of ``earlier`` lies before the first of ``later``."""
    return min(later) - max(earlier)
