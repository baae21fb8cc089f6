"""Business KPIs over the lake and the score book, with the standard definitions.

Each KPI carries a one-line definition (:data:`DEFINITIONS`; the web page shows it on
hover and the JSON carries it) and its movement: the value now, the value a period
earlier and the change. Time is measured up to ``as_of`` (default: the latest order in the
lake, the data's end). Periods are calendar months in UTC; a monthly KPI reports the last
*complete* month (its end at or before ``as_of``) against the month before it, and a
point-in-time KPI (active customers, repeat rate, top customers' share) reports ``as_of``
against one calendar month earlier.

Lake KPIs are computed in DuckDB; score KPIs (CLV distribution, value at risk, RFM segment
sizes) read the score book's table and leave out customers who opted out of profiling.
Segment and tier sizes are compared with the feature snapshot nearest to 30 days before
the latest one. :class:`KpiCache` recomputes the lake part only when the lake's manifest
version changes and the score part only when the score table object changes.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from kizuna.features.catalog import NO_PURCHASES, RFM_SEGMENTS
from kizuna.features.compute import snapshots_dir
from kizuna.features.compute_sql import timestamp_literal
from kizuna.features.contracts import LOYALTY_TIERS
from kizuna.features.ingest import connect
from kizuna.features.lake import Lake
from kizuna.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_DAYS = 365
MONTHS = 24
COHORT_MONTHS = 12
TOP_SHARE = 0.2
HISTOGRAM_BINS = 20
# The previous segment sizes come from the snapshot nearest to this many days before the
# latest snapshot.
SEGMENT_LOOKBACK_DAYS = 30
UNKNOWN = "unknown"

DEFINITIONS: dict[str, str] = {
    "active_customers": "Customers with at least one order (not a return) in the last "
    "{active_days} days.",
    "churn_rate": "Of the customers active at the start of the month (an order in the "
    "{active_days} days before it), the share no longer active at its end.",
    "retention_rate": "Of the customers active at the start of the month, the share still "
    "active at its end (1 - churn rate).",
    "cohorts": "Customers grouped by the month of their first order: the share of each "
    "group with an order in month k after it (month 0 is the first order's month).",
    "repeat_purchase_rate": "Of the customers who ever ordered, the share with two or more "
    "orders (returns not counted).",
    "revenue": "Net revenue of the month: order amounts minus refunds.",
    "top_customers_revenue_share": "Share of the last 12 months' net revenue that came from "
    "the top 20% of buyers, ranked by their own net revenue in those months.",
    "clv": "Predicted value of each customer over the value model's window, customers who "
    "allow profiling.",
    "clv_median": "Median predicted value per customer over the value model's window "
    "(customers who allow profiling).",
    "value_at_risk": "Sum over customers who allow profiling of churn probability times "
    "predicted value.",
    "nps": "Net Promoter Score of the month's answers on the 0-10 scale: % promoters "
    "(9-10) minus % detractors (0-6).",
    "csat": "Share of the month's satisfaction answers (1-5) that are 4 or 5.",
    "segments": "Customers who allow profiling, by RFM segment.",
    "tiers": "Customers signed up by the date (or without a signup date) by loyalty tier; "
    "'unknown' when the tier is empty.",
}


class KpiError(ValueError):
    """KPIs cannot be computed from what the lake holds (no orders yet)."""


# -- the result --------------------------------------------------------------------------
class Kpi(BaseModel):
    """One headline KPI: its value, the value a period earlier and the change."""

    key: str
    label: str
    definition: str
    unit: Literal["customers", "share", "money", "nps"]
    value: float | None
    previous: float | None = None
    change: float | None = Field(None, description="value - previous")
    period: str | None = Field(None, description="The month (YYYY-MM) or day the value is of.")
    previous_period: str | None = None
    note: str | None = None


class Headline(BaseModel):
    """The KPIs of the page's top row."""

    active_customers: Kpi
    churn_rate: Kpi
    retention_rate: Kpi
    repeat_purchase_rate: Kpi
    revenue: Kpi
    top_customers_revenue_share: Kpi
    nps: Kpi
    csat: Kpi
    clv_median: Kpi
    value_at_risk: Kpi


class ChurnMonth(BaseModel):
    month: str
    active_at_start: int
    churned: int
    churn_rate: float | None
    retention_rate: float | None


class Cohort(BaseModel):
    month: str = Field(description="The month of the cohort's first order.")
    customers: int
    retention: list[float | None] = Field(
        description="Share with an order in month k = 0, 1, ...; null where month k is not over."
    )


class RevenueMonth(BaseModel):
    month: str
    revenue: float = Field(description="Order amounts minus refunds.")
    refunds: float
    orders: int
    buyers: int


class NpsMonth(BaseModel):
    month: str
    answers: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None


class CsatMonth(BaseModel):
    month: str
    answers: int
    satisfied: int = Field(description="Answers of 4 or 5.")
    csat: float | None
    mean: float | None


class ClvBin(BaseModel):
    lower: float
    upper: float
    customers: int


class ClvDistribution(BaseModel):
    definition: str
    customers: int
    window_days: int | None
    total: float
    mean: float
    p10: float
    p25: float
    p50: float
    p75: float
    p90: float
    bins: list[ClvBin] = Field(
        description="Equal-width up to the 99th percentile; the last "
        "bin also holds everyone above it."
    )


class ValueAtRisk(BaseModel):
    definition: str
    customers: int
    total: float
    share_of_value: float | None = Field(description="total / sum of predicted value")


class SizeRow(BaseModel):
    name: str
    customers: int
    share: float
    previous: int | None
    change: int | None


class Sizes(BaseModel):
    definition: str
    at: datetime | None = Field(description="When the current sizes are of.")
    previous_at: datetime | None = Field(description="The snapshot compared with.")
    total: int
    rows: list[SizeRow]
    note: str | None = None


class Kpis(BaseModel):
    """Every KPI, as GET /v1/kpis answers and `kizuna kpis --format json` prints."""

    as_of: datetime
    lake_version: int
    active_days: int
    last_complete_month: str | None
    headline: Headline
    churn_by_month: list[ChurnMonth]
    cohorts: list[Cohort]
    revenue_by_month: list[RevenueMonth]
    nps_by_month: list[NpsMonth]
    csat_by_month: list[CsatMonth]
    clv: ClvDistribution | None
    value_at_risk: ValueAtRisk | None
    segments: Sizes | None
    tiers: Sizes
    notes: list[str]
    definitions: dict[str, str] = Field(description="Every KPI's one-line definition, by key.")
    computed_at: datetime
    seconds: float


# -- periods -----------------------------------------------------------------------------
def _utc(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def month_start(moment: datetime | pd.Timestamp) -> pd.Timestamp:
    """00:00 UTC on the first of ``moment``'s month."""
    return _utc(moment).normalize().replace(day=1)


def _label(month: pd.Timestamp) -> str:
    return month.strftime("%Y-%m")


def _lit(moment: pd.Timestamp) -> str:
    return timestamp_literal(moment.to_pydatetime())


def _share(part: float, whole: float) -> float | None:
    return None if not whole else part / whole


def _number(value: Any) -> float | None:
    """A JSON-safe float: None for NULL and NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


@dataclass(frozen=True)
class Window:
    """What the lake KPIs are measured over: ``as_of`` and the complete months before it."""

    as_of: pd.Timestamp
    first_order_at: pd.Timestamp
    months: list[pd.Timestamp]  # complete months shown, oldest first (may be empty)

    @property
    def month_ago(self) -> pd.Timestamp:
        return self.as_of - pd.DateOffset(months=1)

    @classmethod
    def of(cls, first: pd.Timestamp, as_of: pd.Timestamp, months: int) -> Window:
        # A month is complete once its end (the next month's start) is at or before as_of.
        last = month_start(as_of) - pd.DateOffset(months=1)
        start = max(month_start(first), last - pd.DateOffset(months=months - 1))
        shown = list(pd.date_range(start, last, freq="MS")) if start <= last else []
        return cls(as_of, first, shown)


# -- lake KPIs (DuckDB) --------------------------------------------------------------------
@dataclass(frozen=True)
class LakeKpis:
    """The lake's part of the KPIs, for one lake version, ``as_of`` and window."""

    window: Window
    lake_version: int
    active_days: int
    active_now: int
    active_month_ago: int | None
    repeat_now: float | None
    repeat_month_ago: float | None
    top_share_now: float | None
    top_share_month_ago: float | None
    churn: list[ChurnMonth]
    cohorts: list[Cohort]
    revenue: list[RevenueMonth]
    nps: list[NpsMonth]
    csat: list[CsatMonth]
    tiers: dict[str, int]


def data_end(con: duckdb.DuckDBPyConnection, orders: str) -> tuple[datetime, datetime]:
    """The first and the latest order's time (returns included).

    Raises:
        KpiError: when there is no order.
    """
    first, last = con.execute(f"SELECT min(ordered_at), max(ordered_at) FROM {orders}").fetchone()
    if last is None:
        raise KpiError("the lake holds no orders yet; ingest orders first (kizuna ingest)")
    return first, last


def _stage_orders(con: duckdb.DuckDBPyConnection, orders: str, as_of: pd.Timestamp) -> None:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE kpi_orders AS "
        "SELECT customer_id, ordered_at, amount, coalesce(is_return, false) AS is_return "
        f"FROM {orders} WHERE ordered_at <= {_lit(as_of)} AND customer_id IS NOT NULL"
    )


def active_customers(con: duckdb.DuckDBPyConnection, at: pd.Timestamp, days: int) -> int:
    """Customers with an order (not a return) in ``(at - days, at]`` of ``kpi_orders``."""
    (n,) = con.execute(
        "SELECT count(DISTINCT customer_id) FROM kpi_orders WHERE NOT is_return "
        f"AND ordered_at > {_lit(at)} - INTERVAL '{int(days)} days' AND ordered_at <= {_lit(at)}"
    ).fetchone()
    return int(n)


def repeat_purchase_rate(con: duckdb.DuckDBPyConnection, at: pd.Timestamp) -> float | None:
    """Of the customers with an order at or before ``at``, the share with two or more."""
    repeat, buyers = con.execute(
        "SELECT count(*) FILTER (WHERE orders >= 2), count(*) FROM (SELECT customer_id, "
        "count(*) AS orders FROM kpi_orders WHERE NOT is_return "
        f"AND ordered_at <= {_lit(at)} GROUP BY customer_id)"
    ).fetchone()
    return _share(repeat, buyers)


def top_customers_share(con: duckdb.DuckDBPyConnection, at: pd.Timestamp) -> float | None:
    """The top 20% of buyers' share of net revenue in the 12 months up to ``at``.

    Buyers are customers with a positive net revenue in the window; the top are the first
    ceil(20% of them) by that revenue (ties broken by customer id)."""
    since = at - pd.DateOffset(months=12)
    top, total = con.execute(
        f"""WITH spend AS (
                SELECT customer_id, sum(amount) AS revenue FROM kpi_orders
                WHERE ordered_at > {_lit(since)} AND ordered_at <= {_lit(at)}
                GROUP BY customer_id HAVING sum(amount) > 0),
            ranked AS (
                SELECT revenue, row_number() OVER (ORDER BY revenue DESC, customer_id) AS r,
                       count(*) OVER () AS n FROM spend)
            SELECT sum(revenue) FILTER (WHERE r <= ceil({TOP_SHARE} * n)), sum(revenue)
            FROM ranked"""
    ).fetchone()
    return _share(top or 0.0, total or 0.0)


def _months_values(months: list[pd.Timestamp]) -> str:
    return ", ".join(f"({_lit(m)}, {_lit(m + pd.DateOffset(months=1))})" for m in months)


def churn_by_month(
    con: duckdb.DuckDBPyConnection, months: list[pd.Timestamp], days: int
) -> list[ChurnMonth]:
    """Per month: customers active at its start, and how many of them are not at its end."""
    if not months:
        return []
    interval = f"INTERVAL '{int(days)} days'"
    rows = con.execute(
        f"""WITH months(month_start, month_end) AS (VALUES {_months_values(months)}),
            buys AS (SELECT DISTINCT customer_id, ordered_at FROM kpi_orders WHERE NOT is_return),
            flags AS (
                SELECT m.month_start, b.customer_id,
                       bool_or(b.ordered_at <= m.month_start) AS at_start,
                       bool_or(b.ordered_at > m.month_end - {interval}) AS at_end
                FROM months AS m JOIN buys AS b
                  ON b.ordered_at > m.month_start - {interval} AND b.ordered_at <= m.month_end
                GROUP BY ALL)
            SELECT month_start, count(*) FILTER (WHERE at_start),
                   count(*) FILTER (WHERE at_start AND NOT at_end)
            FROM flags GROUP BY month_start"""
    ).fetchall()
    found = {_label(_utc(m)): (int(base), int(lost)) for m, base, lost in rows}
    out = []
    for m in months:
        base, lost = found.get(_label(m), (0, 0))
        churn = _share(lost, base)
        out.append(
            ChurnMonth(
                month=_label(m),
                active_at_start=base,
                churned=lost,
                churn_rate=churn,
                retention_rate=None if churn is None else 1.0 - churn,
            )
        )
    return out


def cohort_grid(
    con: duckdb.DuckDBPyConnection, last_month: pd.Timestamp | None, cohorts: int
) -> list[Cohort]:
    """The last ``cohorts`` complete first-order months, each with its share of customers
    ordering in month k after it, for every k whose month is over by ``last_month``."""
    if last_month is None:
        return []
    first = last_month - pd.DateOffset(months=cohorts - 1)
    rows = con.execute(
        f"""WITH buys AS (
                SELECT customer_id, CAST(date_trunc('month', ordered_at) AS DATE) AS month
                FROM kpi_orders WHERE NOT is_return),
            firsts AS (SELECT customer_id, min(month) AS cohort FROM buys GROUP BY customer_id)
            SELECT f.cohort, datediff('month', f.cohort, a.month) AS k,
                   count(DISTINCT customer_id) AS customers
            FROM firsts AS f JOIN buys AS a USING (customer_id)
            WHERE f.cohort >= CAST({_lit(first)} AS DATE)
              AND f.cohort <= CAST({_lit(last_month)} AS DATE)
            GROUP BY ALL"""
    ).df()
    out = []
    for cohort, cells in rows.groupby("cohort", sort=True):
        start = _utc(cohort)
        counts = dict(zip(cells["k"].astype(int), cells["customers"].astype(int), strict=True))
        size = counts.get(0, 0)
        over = (last_month.year - start.year) * 12 + last_month.month - start.month
        retention = [_share(counts.get(k, 0), size) for k in range(over + 1)]
        retention += [None] * (cohorts - len(retention))
        out.append(Cohort(month=_label(start), customers=size, retention=retention[:cohorts]))
    return out


def revenue_by_month(
    con: duckdb.DuckDBPyConnection, months: list[pd.Timestamp]
) -> list[RevenueMonth]:
    """Per month: net revenue (returns are negative amounts), refunds, orders and buyers."""
    if not months:
        return []
    end = months[-1] + pd.DateOffset(months=1)
    rows = con.execute(
        f"""SELECT CAST(date_trunc('month', ordered_at) AS DATE), sum(amount),
                   coalesce(-sum(amount) FILTER (WHERE is_return), 0),
                   count(*) FILTER (WHERE NOT is_return),
                   count(DISTINCT customer_id) FILTER (WHERE NOT is_return)
            FROM kpi_orders WHERE ordered_at >= {_lit(months[0])} AND ordered_at < {_lit(end)}
            GROUP BY 1"""
    ).fetchall()
    found = {_label(_utc(m)): r for m, *r in rows}
    out = []
    for m in months:
        revenue, refunds, orders, buyers = found.get(_label(m), (0.0, 0.0, 0, 0))
        out.append(
            RevenueMonth(
                month=_label(m),
                revenue=float(revenue),
                refunds=float(refunds),
                orders=int(orders),
                buyers=int(buyers),
            )
        )
    return out


def surveys_by_month(
    con: duckdb.DuckDBPyConnection, events: str, months: list[pd.Timestamp]
) -> tuple[list[NpsMonth], list[CsatMonth]]:
    """Per month: the NPS answers by kind and the NPS; the CSAT answers, share and mean."""
    if not months:
        return [], []
    end = months[-1] + pd.DateOffset(months=1)
    nps, csat = "type = 'nps_response'", "type = 'csat_response'"
    rows = con.execute(
        f"""SELECT CAST(date_trunc('month', occurred_at) AS DATE),
                   count(*) FILTER (WHERE {nps}),
                   count(*) FILTER (WHERE {nps} AND value >= 9),
                   count(*) FILTER (WHERE {nps} AND value <= 6),
                   count(*) FILTER (WHERE {csat}),
                   count(*) FILTER (WHERE {csat} AND value >= 4),
                   avg(value) FILTER (WHERE {csat})
            FROM {events} AS src
            WHERE type IN ('nps_response', 'csat_response') AND value IS NOT NULL
              AND occurred_at >= {_lit(months[0])} AND occurred_at < {_lit(end)}
            GROUP BY 1"""
    ).fetchall()
    found = {_label(_utc(m)): r for m, *r in rows}
    nps_out, csat_out = [], []
    for m in months:
        answers, promoters, detractors, c_answers, satisfied, mean = found.get(
            _label(m), (0, 0, 0, 0, 0, None)
        )
        score = _share(100.0 * (promoters - detractors), answers)
        nps_out.append(
            NpsMonth(
                month=_label(m),
                answers=answers,
                promoters=promoters,
                passives=answers - promoters - detractors,
                detractors=detractors,
                nps=score,
            )
        )
        csat_out.append(
            CsatMonth(
                month=_label(m),
                answers=c_answers,
                satisfied=satisfied,
                csat=_share(satisfied, c_answers),
                mean=_number(mean),
            )
        )
    return nps_out, csat_out


def tier_sizes(con: duckdb.DuckDBPyConnection, customers: str, at: pd.Timestamp) -> dict[str, int]:
    """Customers signed up by ``at`` (or without a signup date) per loyalty tier."""
    rows = con.execute(
        f"SELECT coalesce(loyalty_tier, '{UNKNOWN}'), count(DISTINCT customer_id) "
        f"FROM {customers} AS src WHERE customer_id IS NOT NULL "
        f"AND (signup_at IS NULL OR signup_at <= {_lit(at)}) GROUP BY 1"
    ).fetchall()
    return {str(tier): int(n) for tier, n in rows}


def lake_kpis(
    settings: Settings,
    *,
    active_days: int = ACTIVE_DAYS,
    as_of: datetime | None = None,
    months: int = MONTHS,
    cohort_months: int = COHORT_MONTHS,
) -> LakeKpis:
    """The KPIs computed from the lake alone, in DuckDB.

    Raises:
        KpiError: the lake holds no orders.
    """
    lake = Lake(settings)
    version = lake.manifest().version
    orders, events = lake.relation_sql("orders"), lake.relation_sql("events")
    con = connect(settings)
    try:
        first, last = data_end(con, orders)
        end = _utc(as_of) if as_of is not None else _utc(last)
        window = Window.of(_utc(first), end, months)
        _stage_orders(con, orders, end)
        ago = window.month_ago
        before_data = ago < window.first_order_at
        nps, csat = surveys_by_month(con, events, window.months)
        return LakeKpis(
            window=window,
            lake_version=version,
            active_days=active_days,
            active_now=active_customers(con, end, active_days),
            active_month_ago=None if before_data else active_customers(con, ago, active_days),
            repeat_now=repeat_purchase_rate(con, end),
            repeat_month_ago=None if before_data else repeat_purchase_rate(con, ago),
            top_share_now=top_customers_share(con, end),
            top_share_month_ago=None if before_data else top_customers_share(con, ago),
            churn=churn_by_month(con, window.months, active_days),
            cohorts=cohort_grid(con, window.months[-1] if window.months else None, cohort_months),
            revenue=revenue_by_month(con, window.months),
            nps=nps,
            csat=csat,
            tiers=tier_sizes(con, lake.relation_sql("customers"), end),
        )
    finally:
        con.close()


# -- score-book KPIs ---------------------------------------------------------------------
def profiled(table: pd.DataFrame) -> pd.DataFrame:
    """The score table's customers who allow profiling (an empty flag means allowed)."""
    keep = table["consent_profiling"].astype("boolean").fillna(True).astype(bool)
    return table[keep.to_numpy()]


def clv_distribution(table: pd.DataFrame) -> ClvDistribution | None:
    """Quantiles, mean and histogram of ``value_predicted``; None without a value model."""
    if "value_predicted" not in table:
        return None
    values = profiled(table)["value_predicted"].dropna().to_numpy(dtype=float)
    if values.size == 0:
        return None
    p10, p25, p50, p75, p90, p99 = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
    low, high = float(values.min()), float(values.max())
    top = p99 if p99 > low else high
    edges = np.linspace(low, top, HISTOGRAM_BINS + 1) if top > low else np.array([low, high])
    counts, _ = np.histogram(np.clip(values, low, edges[-1]), bins=edges)
    bins = [
        ClvBin(lower=float(a), upper=float(b), customers=int(n))
        for a, b, n in zip(edges[:-1], edges[1:], counts, strict=True)
    ]
    bins[-1] = bins[-1].model_copy(update={"upper": high})
    window = table["value_window_days"].dropna() if "value_window_days" in table else None
    return ClvDistribution(
        definition=DEFINITIONS["clv"],
        customers=int(values.size),
        window_days=int(window.iloc[0]) if window is not None and len(window) else None,
        total=float(values.sum()),
        mean=float(values.mean()),
        p10=float(p10),
        p25=float(p25),
        p50=float(p50),
        p75=float(p75),
        p90=float(p90),
        bins=bins,
    )


def value_at_risk(table: pd.DataFrame) -> ValueAtRisk | None:
    """The sum of churn probability x predicted value; None without both models."""
    if "value_at_risk" not in table:
        return None
    rows = profiled(table)
    at_risk = rows["value_at_risk"].dropna()
    total = float(at_risk.sum())
    return ValueAtRisk(
        definition=DEFINITIONS["value_at_risk"],
        customers=int(at_risk.size),
        total=total,
        share_of_value=_share(total, float(rows["value_predicted"].sum())),
    )


def segment_sizes(table: pd.DataFrame) -> dict[str, int]:
    """Customers who allow profiling per RFM segment."""
    counts = profiled(table)["rfm_segment"].fillna(UNKNOWN).astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


# -- feature snapshots: the sizes a month ago ---------------------------------------------
@dataclass(frozen=True)
class ProfileSnapshot:
    """Segment and tier sizes of one feature snapshot."""

    at: pd.Timestamp
    segments: dict[str, int]  # customers who allow profiling
    tiers: dict[str, int]  # everyone


def _profile_file(settings: Settings):
    return snapshots_dir(settings) / "customer_profile.parquet"


def snapshot_stamp(settings: Settings) -> tuple[int, int] | None:
    """(mtime, size) of the profile snapshot file, to notice a rebuild; None without one."""
    path = _profile_file(settings)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def profile_snapshots(
    settings: Settings, as_of: pd.Timestamp
) -> tuple[ProfileSnapshot | None, ProfileSnapshot | None]:
    """The latest profile snapshot at or before ``as_of``, and the earlier one nearest to
    :data:`SEGMENT_LOOKBACK_DAYS` before it (None where there is none)."""
    path = _profile_file(settings)
    if not path.exists():
        return None, None
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        source = f"read_parquet('{path}')"
        stamps = [
            _utc(s)
            for (s,) in con.execute(
                f"SELECT DISTINCT event_timestamp FROM {source} "
                f"WHERE event_timestamp <= {_lit(as_of)} ORDER BY 1"
            ).fetchall()
        ]
        if not stamps:
            return None, None
        latest, earlier = stamps[-1], stamps[:-1]
        target = latest - pd.Timedelta(days=SEGMENT_LOOKBACK_DAYS)
        previous = min(earlier, key=lambda s: (abs(s - target), s)) if earlier else None

        def sizes(at: pd.Timestamp) -> ProfileSnapshot:
            def count(column: str, where: str) -> dict[str, int]:
                rows = con.execute(
                    f"SELECT coalesce({column}, '{UNKNOWN}'), count(*) FROM {source} "
                    f"WHERE event_timestamp = {_lit(at)} {where} GROUP BY 1"
                ).fetchall()
                return {str(k): int(v) for k, v in rows}

            return ProfileSnapshot(
                at,
                count("rfm_segment", "AND coalesce(consent_profiling, true)"),
                count("loyalty_tier", ""),
            )

        return sizes(latest), None if previous is None else sizes(previous)
    finally:
        con.close()


def _size_rows(now: dict[str, int], previous: dict[str, int] | None, order) -> list[SizeRow]:
    names = [n for n in order if n in now or (previous and n in previous)]
    names += sorted((set(now) | set(previous or ())) - set(names))
    total = sum(now.values())
    rows = []
    for name in names:
        n = now.get(name, 0)
        before = None if previous is None else previous.get(name, 0)
        rows.append(
            SizeRow(
                name=name,
                customers=n,
                share=_share(n, total) or 0.0,
                previous=before,
                change=None if before is None else n - before,
            )
        )
    return rows


def _sizes(
    key: str,
    now: dict[str, int],
    at: datetime | None,
    previous: ProfileSnapshot | None,
    order,
    note: str | None = None,
) -> Sizes:
    before = None if previous is None else getattr(previous, key)
    if previous is None:
        note = (note + "; " if note else "") + (
            "no earlier feature snapshot to compare with: build one with "
            "`kizuna features build` at a cutoff a month back"
        )
    return Sizes(
        definition=definition(key),
        at=at,
        previous_at=None if previous is None else previous.at.to_pydatetime(),
        total=sum(now.values()),
        rows=_size_rows(now, before, order),
        note=note,
    )


# -- assembling ----------------------------------------------------------------------------
_SEGMENT_ORDER = (*RFM_SEGMENTS, NO_PURCHASES, UNKNOWN)
_TIER_ORDER = (*LOYALTY_TIERS, UNKNOWN)
_LABELS = {
    "active_customers": "Active customers",
    "churn_rate": "Churn rate",
    "retention_rate": "Retention rate",
    "repeat_purchase_rate": "Repeat-purchase rate",
    "revenue": "Revenue",
    "top_customers_revenue_share": "Top 20% share of revenue",
    "nps": "NPS",
    "csat": "CSAT",
    "clv_median": "Median customer value",
    "value_at_risk": "Value at risk",
}


def definition(key: str, active_days: int = ACTIVE_DAYS) -> str:
    """The one-line definition of KPI ``key`` (as the page shows it on hover)."""
    return DEFINITIONS[key].format(active_days=active_days)


@dataclass(frozen=True)
class _Reading:
    """A KPI's value now and a period earlier, with the periods' names."""

    value: Any
    previous: Any = None
    period: str | None = None
    previous_period: str | None = None
    note: str | None = None


def _kpi(key: str, unit: str, r: _Reading, active_days: int) -> Kpi:
    value, previous = _number(r.value), _number(r.previous)
    return Kpi(
        key=key,
        label=_LABELS[key],
        definition=definition(key, active_days),
        unit=unit,
        value=value,
        previous=previous,
        change=None if value is None or previous is None else value - previous,
        period=r.period,
        previous_period=r.previous_period if previous is not None else None,
        note=r.note,
    )


def _monthly(series: list, field: str) -> _Reading:
    """The last complete month's value against the month before it."""
    if not series:
        return _Reading(None, note="no complete month in the data yet")
    now, before = series[-1], (series[-2] if len(series) > 1 else None)
    if before is None:
        return _Reading(getattr(now, field), period=now.month, note="no earlier month")
    note = None
    if getattr(now, field) is None or getattr(before, field) is None:
        empty = [m.month for m in (now, before) if getattr(m, field) is None]
        note = f"nothing to measure in {' and '.join(empty)}"
    return _Reading(getattr(now, field), getattr(before, field), now.month, before.month, note)


def _headline(
    lake: LakeKpis, clv: ClvDistribution | None, risk: ValueAtRisk | None, notes: dict[str, str]
) -> Headline:
    w, d = lake.window, lake.active_days
    day, ago = w.as_of.strftime("%Y-%m-%d"), w.month_ago.strftime("%Y-%m-%d")

    def point(now: Any, before: Any) -> _Reading:
        return _Reading(now, before, day, ago)

    scores = "today's scores; no earlier ones are kept"
    return Headline(
        active_customers=_kpi(
            "active_customers", "customers", point(lake.active_now, lake.active_month_ago), d
        ),
        churn_rate=_kpi("churn_rate", "share", _monthly(lake.churn, "churn_rate"), d),
        retention_rate=_kpi("retention_rate", "share", _monthly(lake.churn, "retention_rate"), d),
        repeat_purchase_rate=_kpi(
            "repeat_purchase_rate", "share", point(lake.repeat_now, lake.repeat_month_ago), d
        ),
        revenue=_kpi("revenue", "money", _monthly(lake.revenue, "revenue"), d),
        top_customers_revenue_share=_kpi(
            "top_customers_revenue_share",
            "share",
            point(lake.top_share_now, lake.top_share_month_ago),
            d,
        ),
        nps=_kpi("nps", "nps", _monthly(lake.nps, "nps"), d),
        csat=_kpi("csat", "share", _monthly(lake.csat, "csat"), d),
        clv_median=_kpi(
            "clv_median",
            "money",
            _Reading(clv.p50, note=scores) if clv else _Reading(None, note=notes["clv"]),
            d,
        ),
        value_at_risk=_kpi(
            "value_at_risk",
            "money",
            _Reading(risk.total, note=scores) if risk else _Reading(None, note=notes["risk"]),
            d,
        ),
    )


def _unavailable(table: pd.DataFrame | None, models: str) -> str:
    if table is None:
        return "unavailable: no score book (the models are not loaded; kizuna train all)"
    return f"unavailable: needs the {models} model{'s' * (' and ' in models)}, not served"


def _segments(
    table: pd.DataFrame | None,
    latest: ProfileSnapshot | None,
    previous: ProfileSnapshot | None,
) -> Sizes | None:
    """Segment sizes now (the score table, else the latest snapshot) and a month back."""
    if table is not None:
        stamps = pd.to_datetime(table["features_at"], utc=True)
        at = stamps.max().to_pydatetime() if len(stamps) else None
        return _sizes("segments", segment_sizes(table), at, previous, _SEGMENT_ORDER)
    if latest is not None:
        note = "no score book: the sizes are the latest feature snapshot's"
        now, at = latest.segments, latest.at.to_pydatetime()
        return _sizes("segments", now, at, previous, _SEGMENT_ORDER, note)
    return None


def assemble(
    lake: LakeKpis,
    table: pd.DataFrame | None,
    snapshots: tuple[ProfileSnapshot | None, ProfileSnapshot | None],
    started: float | None = None,
) -> Kpis:
    """One answer from the lake's KPIs, the score table (None: no score book) and the
    profile snapshots (:func:`profile_snapshots`)."""
    started = time.perf_counter() if started is None else started
    w = lake.window
    notes = []
    if w.months:
        notes.append(
            f"monthly figures run through {_label(w.months[-1])}: "
            f"{_label(month_start(w.as_of))} is not over at {w.as_of:%Y-%m-%d %H:%M} UTC"
        )
    clv = None if table is None else clv_distribution(table)
    risk = None if table is None else value_at_risk(table)
    missing = {"clv": _unavailable(table, "value"), "risk": _unavailable(table, "churn and value")}
    if clv is None:
        notes.append(f"CLV distribution {missing['clv']}")
    if risk is None:
        notes.append(f"value at risk {missing['risk']}")
    latest, previous = snapshots
    segments = _segments(table, latest, previous)
    if segments is None:
        notes.append("segments unavailable: no score book and no feature snapshot")
    return Kpis(
        as_of=w.as_of.to_pydatetime(),
        lake_version=lake.lake_version,
        active_days=lake.active_days,
        last_complete_month=_label(w.months[-1]) if w.months else None,
        headline=_headline(lake, clv, risk, missing),
        churn_by_month=lake.churn,
        cohorts=lake.cohorts,
        revenue_by_month=lake.revenue,
        nps_by_month=lake.nps,
        csat_by_month=lake.csat,
        clv=clv,
        value_at_risk=risk,
        segments=segments,
        tiers=_sizes("tiers", lake.tiers, w.as_of.to_pydatetime(), previous, _TIER_ORDER),
        notes=notes,
        definitions={key: definition(key, lake.active_days) for key in DEFINITIONS},
        computed_at=datetime.now(UTC),
        seconds=round(time.perf_counter() - started, 4),
    )


def compute_kpis(
    settings: Settings,
    table: pd.DataFrame | None = None,
    *,
    active_days: int = ACTIVE_DAYS,
    as_of: datetime | None = None,
    months: int = MONTHS,
    cohort_months: int = COHORT_MONTHS,
) -> Kpis:
    """Every KPI, computed now (:class:`KpiCache` keeps them between calls).

    Args:
        settings: where the lake and the feature snapshots are.
        table: the score book's table (``ScoreBook.table``); None leaves the score KPIs
            out, each with a note.
        active_days: the window that makes a customer active (and churned once it passes).
        as_of: the moment measured up to; default the latest order in the lake.
        months: how many complete months the monthly series show.
        cohort_months: how many first-order months the cohort grid shows (and its width).

    Raises:
        KpiError: the lake holds no orders.
    """
    started = time.perf_counter()
    lake = lake_kpis(
        settings, active_days=active_days, as_of=as_of, months=months, cohort_months=cohort_months
    )
    return assemble(lake, table, profile_snapshots(settings, lake.window.as_of), started)


@dataclass
class _Entry:
    lake: LakeKpis
    table: pd.DataFrame | None
    snapshot: tuple[int, int] | None
    kpis: Kpis


class KpiCache:
    """The KPIs, recomputed only when the data under them changes (thread-safe).

    The lake part is kept per (home, lake version, ``active_days``, ``as_of``); the answer is
    rebuilt from it when the score table object or the profile snapshot file changes, which
    costs milliseconds. Entries of older lake versions are dropped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple, _Entry] = {}

    def get(
        self,
        settings: Settings,
        table: pd.DataFrame | None = None,
        *,
        active_days: int = ACTIVE_DAYS,
        as_of: datetime | None = None,
    ) -> Kpis:
        """The KPIs of the lake as it is now and of ``table`` (see :func:`compute_kpis`)."""
        version = Lake(settings).manifest().version
        stamp = snapshot_stamp(settings)
        key = (str(settings.home_dir), version, active_days, None if as_of is None else _utc(as_of))
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.table is table and entry.snapshot == stamp:
                return entry.kpis
            started = time.perf_counter()
            if entry is None:
                lake = lake_kpis(settings, active_days=active_days, as_of=as_of)
                seconds = time.perf_counter() - started
                log.info("computed the lake KPIs of version %d in %.2f s", version, seconds)
            else:
                lake = entry.lake
            snapshots = profile_snapshots(settings, lake.window.as_of)
            kpis = assemble(lake, table, snapshots, started)
            # Keep this lake version's other variants (a few active_days / as_of values).
            kept = [(k, e) for k, e in self._entries.items() if k[:2] == key[:2]]
            self._entries = dict(kept[-7:])
            self._entries[key] = _Entry(lake, table, stamp, kpis)
            return kpis
