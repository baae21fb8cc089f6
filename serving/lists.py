"""The marketer lists, shared by the API and `kizuna lists`: filters, order, columns.

Columns (JSON keys and CSV header, in this order): customer_id, churn_probability,
risk_band, value_12m, value_at_risk, p_buy_30d, expected_next_purchase_date, rfm_segment,
days_since_last_contact, reasons (CSV: joined with "; ").
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from kizuna.serving.scoring import ScoreBook

COLUMNS = [
    "customer_id",
    "churn_probability",
    "risk_band",
    "value_12m",
    "value_at_risk",
    "p_buy_30d",
    "expected_next_purchase_date",
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


def _filtered(book: ScoreBook, f: ListFilter) -> pd.DataFrame:
    t = book.table
    keep = t["consent_profiling"].fillna(True).astype(bool)
    keep &= t["churn_probability"] >= f.min_churn
    keep &= t["value_12m"] >= f.min_value
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
    out["expected_next_purchase_date"] = out["expected_next_purchase_at"].dt.date.astype(str)
    out["reasons"] = book.reasons_of(list(out["customer_id"]))
    return out[COLUMNS].reset_index(drop=True)


def at_risk(book: ScoreBook, f: ListFilter) -> pd.DataFrame:
    """Customers above the churn and value floors, most value at risk first."""
    rows = _filtered(book, f).sort_values(["value_at_risk", "customer_id"], ascending=[False, True])
    return _shape(book, rows.head(f.limit))


def due_to_repurchase(book: ScoreBook, f: ListFilter, within_days: int) -> pd.DataFrame:
    """Customers expected to buy within ``within_days`` of now (or overdue), soonest first."""
    rows = _filtered(book, f)
    horizon = pd.Timestamp(book.built_at + timedelta(days=within_days))
    rows = rows[rows["expected_next_purchase_at"] <= horizon]
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
