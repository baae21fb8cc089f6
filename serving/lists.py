"""The marketer lists, shared by the API and `kizuna lists`: filters, order, columns.

Columns (JSON keys and CSV header, in this order): customer_id, churn_probability,
risk_band, value_predicted, value_window_days, value_at_risk, p_buy_30d,
expected_next_purchase_date, expected_next_purchase_p25_date,
expected_next_purchase_p75_date, unlikely_within_days, overdue, rfm_segment,
days_since_last_contact, reasons (CSV: joined with "; "). The expected next purchase is
the median day, with the P25-P75 range; a day beyond the timing model's horizon is empty,
and ``unlikely_within_days`` (the horizon) says the median lies beyond it.
``value_predicted`` is the expected spend over the next ``value_window_days``.

A list that sorts or filters on a model without a champion raises
:class:`~kizuna.serving.scoring.MissingModelError`; the columns of a model that is absent
but not needed are empty.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from kizuna.serving.scoring import ScoreBook
from kizuna.training.repurchase import HORIZON_DAYS

COLUMNS = [
    "customer_id",
    "churn_probability",
    "risk_band",
    "value_predicted",
    "value_window_days",
    "value_at_risk",
    "p_buy_30d",
    "expected_next_purchase_date",
    "expected_next_purchase_p25_date",
    "expected_next_purchase_p75_date",
    "unlikely_within_days",
    "overdue",
    "rfm_segment",
    "days_since_last_contact",
    "reasons",
]


@dataclass(frozen=True)
class ListFilter:
    """What a marketer narrows a list by."""

    min_churn: float = 0.0
    min_value: float = 0.0
    segments: tuple[str, ...] = ()
    channel: str | None = None
    not_contacted_days: int | None = None
    limit: int = 100


def _require(book: ScoreBook, f: ListFilter, models: tuple[str, ...], name: str) -> None:
    """The list's own models, and those its filters read (a zero floor reads none)."""
    needed = [
        *models,
        *(["churn"] if f.min_churn > 0 else []),
        *(["value"] if f.min_value > 0 else []),
    ]
    book.champions.require(tuple(dict.fromkeys(needed)), name)


def _filtered(book: ScoreBook, f: ListFilter) -> pd.DataFrame:
    t = book.table
    keep = t["consent_profiling"].fillna(True).astype(bool)
    if f.min_churn > 0:
        keep &= t["churn_probability"] >= f.min_churn
    if f.min_value > 0:
        keep &= t["value_predicted"] >= f.min_value
    if f.segments:
        keep &= t["rfm_segment"].isin(f.segments)
    if f.channel:
        keep &= t[f"consent_{f.channel}"].fillna(False).astype(bool)
    if f.not_contacted_days is not None:
        since = t["days_since_last_contact"]
        keep &= since.isna() | (since >= f.not_contacted_days)
    return t[keep]


def _shape(book: ScoreBook, rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.copy()
    if "expected_next_purchase_at" in out:  # absent without a repurchase model
        for day in ("", "_p25", "_p75"):  # NaT (beyond the horizon) -> empty
            at = out[f"expected_next_purchase{day}_at"]
            out[f"expected_next_purchase{day}_date"] = at.dt.strftime("%Y-%m-%d")
        unlikely = out["buy_unlikely_within_horizon"].astype(bool)
        flags = [HORIZON_DAYS if u else None for u in unlikely]  # an int or empty, not 90.0
        out["unlikely_within_days"] = pd.Series(flags, index=out.index, dtype=object)
    out["reasons"] = book.reasons_of(list(out["customer_id"]))
    return out.reindex(columns=COLUMNS).reset_index(drop=True)  # absent models: empty


def at_risk(book: ScoreBook, f: ListFilter) -> pd.DataFrame:
    """Customers above the churn and value floors, most value at risk first."""
    _require(book, f, ("churn", "value"), "the at-risk list (sorted by value at risk)")
    rows = _filtered(book, f).sort_values(["value_at_risk", "customer_id"], ascending=[False, True])
    return _shape(book, rows.head(f.limit))


def due_to_repurchase(book: ScoreBook, f: ListFilter, within_days: int) -> pd.DataFrame:
    """Customers whose median next purchase falls within ``within_days`` of now (or has
    passed), and those past their own usual gap (``overdue``) who are still likely to buy
    within the timing model's horizon; soonest median first. (Overdue customers unlikely
    to buy within it are lapsing: the at-risk list's.)"""
    _require(book, f, ("repurchase",), "the due-to-repurchase list")
    rows = _filtered(book, f)
    horizon = pd.Timestamp(book.built_at + timedelta(days=within_days))
    due = rows["expected_next_purchase_at"] <= horizon
    due |= rows["overdue"].eq(True) & ~rows["buy_unlikely_within_horizon"].astype(bool)
    rows = rows[due]
    rows = rows.sort_values(["expected_next_purchase_at", "customer_id"])
    return _shape(book, rows.head(f.limit))


def _value(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    return v.item() if hasattr(v, "item") else v


def to_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _value(v) for k, v in r.items()} for r in rows.to_dict("records")]


def to_csv(rows: pd.DataFrame) -> str:
    out = rows.copy()
    out["reasons"] = out["reasons"].map("; ".join)
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()
