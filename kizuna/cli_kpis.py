"""``kizuna kpis``: the business KPIs as a table, or as the JSON GET /v1/kpis answers."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.table import Table

from kizuna.console import console, err, fail
from kizuna.settings import Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd

    from kizuna.serving.kpis import Kpi, Kpis, Sizes

# Months and cohort columns the table shows (the JSON has them all).
SHOWN_MONTHS = 6
SHOWN_COHORT_MONTHS = 7


def _score_table(settings: Settings) -> pd.DataFrame | None:
    """The score book's table, or None (the score KPIs are then shown as unavailable)."""
    from kizuna.serving.app import build_book
    from kizuna.serving.scoring import ServingError

    try:
        book = build_book(settings)
    except ServingError as exc:
        err.print(f"score KPIs unavailable: {exc}", highlight=False, soft_wrap=True)
        return None
    book.close()
    return book.table


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{value:.1%}"
    if unit == "customers":
        return f"{value:,.0f}"
    if unit == "money":
        return f"{value:,.2f}"
    return f"{value:.1f}"


def _change(kpi: Kpi) -> str:
    if kpi.change is None:
        return "-"
    if kpi.unit == "share":
        return f"{100 * kpi.change:+.1f} pp"
    if kpi.unit == "customers":
        return f"{kpi.change:+,.0f}"
    return f"{kpi.change:+,.2f}" if kpi.unit == "money" else f"{kpi.change:+.1f}"


def _headline(k: Kpis) -> Table:
    table = Table(title=f"KPIs as of {k.as_of:%Y-%m-%d %H:%M} UTC (lake version {k.lake_version})")
    for column in ("KPI", "value", "period", "previous", "change", "note"):
        table.add_column(column, justify="right" if column in ("value", "change") else "left")
    for kpi in k.headline.__dict__.values():
        previous = _value(kpi.previous, kpi.unit)
        if kpi.previous_period:
            previous += f" ({kpi.previous_period})"
        row = (kpi.label, _value(kpi.value, kpi.unit), kpi.period or "", previous)
        table.add_row(*row, _change(kpi), kpi.note or "")
    return table


def _months(k: Kpis) -> Table:
    table = Table(title="By month")
    for column in ("month", "revenue", "orders", "churn", "retention", "NPS", "CSAT"):
        table.add_column(column, justify="left" if column == "month" else "right")
    rows = zip(k.revenue_by_month, k.churn_by_month, k.nps_by_month, k.csat_by_month, strict=True)
    for revenue, churn, nps, csat in list(rows)[-SHOWN_MONTHS:]:
        table.add_row(
            revenue.month,
            _value(revenue.revenue, "money"),
            f"{revenue.orders:,}",
            _value(churn.churn_rate, "share"),
            _value(churn.retention_rate, "share"),
            f"{_value(nps.nps, 'nps')} ({nps.answers})",
            f"{_value(csat.csat, 'share')} ({csat.answers})",
        )
    return table


def _cohorts(k: Kpis) -> Table:
    table = Table(title="Cohorts: share ordering in month k after the first order")
    table.add_column("first order")
    table.add_column("customers", justify="right")
    for month in range(SHOWN_COHORT_MONTHS):
        table.add_column(f"k={month}", justify="right")
    for cohort in k.cohorts:
        cells = [_value(r, "share") for r in cohort.retention[:SHOWN_COHORT_MONTHS]]
        table.add_row(cohort.month, f"{cohort.customers:,}", *cells)
    return table


def _sizes(title: str, sizes: Sizes) -> Table:
    since = f" (change since {sizes.previous_at:%Y-%m-%d})" if sizes.previous_at else ""
    table = Table(title=f"{title}{since}")
    for column in ("name", "customers", "share", "change"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in sizes.rows:
        change = "-" if row.change is None else f"{row.change:+,}"
        table.add_row(row.name, f"{row.customers:,}", f"{row.share:.1%}", change)
    return table


def _print_tables(k: Kpis) -> None:
    console.print(_headline(k))
    console.print(_months(k))
    console.print(_cohorts(k))
    if k.clv is not None:
        c = k.clv
        window = f" over {c.window_days} days" if c.window_days else ""
        console.print(
            f"Customer value{window} ({c.customers:,} customers): p10 {c.p10:,.2f}  "
            f"p25 {c.p25:,.2f}  median {c.p50:,.2f}  p75 {c.p75:,.2f}  p90 {c.p90:,.2f}  "
            f"mean {c.mean:,.2f}",
            highlight=False,
        )
    if k.value_at_risk is not None:
        v = k.value_at_risk
        console.print(f"Value at risk: {v.total:,.2f} ({v.customers:,} customers)", highlight=False)
    if k.segments is not None:
        console.print(_sizes("RFM segments", k.segments))
    console.print(_sizes("Loyalty tiers", k.tiers))
    for note in k.notes + [s.note for s in (k.segments, k.tiers) if s is not None and s.note]:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)


def kpis_command(
    active_days: Annotated[
        int, typer.Option(min=1, max=3650, help="An order within this many days is active.")
    ] = 365,
    as_of: Annotated[
        datetime | None,
        typer.Option(help="Measure up to this moment (UTC); default: the latest order."),
    ] = None,
    scores: Annotated[
        bool,
        typer.Option(help="Load the champion models for CLV, value at risk and segments."),
    ] = True,
    format: Annotated[Literal["table", "json"], typer.Option(help="table or json.")] = "table",
) -> None:
    """Print the business KPIs: active customers, churn and retention per month, cohorts,
    repeat rate, revenue, the top 20%'s share, CLV, value at risk, NPS, CSAT, RFM segment
    and loyalty tier sizes, each with its change since the last period. `--format json`
    prints what GET /v1/kpis answers.

    Example:

        kizuna kpis --active-days 180 --format json > kpis.json
    """
    from kizuna.serving.kpis import KpiError, compute_kpis

    settings = get_settings()
    table = _score_table(settings) if scores else None
    try:
        kpis = compute_kpis(settings, table, active_days=active_days, as_of=as_of)
    except KpiError as exc:
        fail(str(exc))
    if format == "json":
        sys.stdout.write(kpis.model_dump_json(indent=1) + "\n")
    else:
        _print_tables(kpis)
