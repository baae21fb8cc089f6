"""Reasons in plain words: LightGBM's feature contributions turned into what a marketer reads.

A customer's churn risk is explained by the features that pushed it up most (SHAP values
from ``pred_contrib``), each phrased with the customer's own values: "no order for 94
days; usual gap 31 days". Features without a phrase of their own get a generic one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Row = Mapping[str, Any]


def _num(row: Row, name: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _recency(row: Row) -> str | None:
    days, gap = _num(row, "days_since_last_order"), _num(row, "gap_median_days")
    if days is None:
        return "has never ordered"
    text = f"no order for {days:.0f} days"
    return f"{text}; usual gap {gap:.0f} days" if gap else text


def _overdue(row: Row) -> str | None:
    index = _num(row, "overdue_index")
    return None if index is None else f"waiting {index:.1f} times their usual time between orders"


def _count(name: str, what: str, window: str) -> Callable[[Row], str | None]:
    def phrase(row: Row) -> str | None:
        value = _num(row, name)
        return None if value is None else f"{value:.0f} {what} in {window}"

    return phrase


def _trend(name: str, what: str, window: str) -> Callable[[Row], str | None]:
    def phrase(row: Row) -> str | None:
        value = _num(row, name)
        if value is None or value == 0:
            return None
        direction = "down" if value < 0 else "up"
        return f"{what} {direction} {abs(value):.0f} on the previous {window}"

    return phrase


def _days(name: str, what: str) -> Callable[[Row], str | None]:
    def phrase(row: Row) -> str | None:
        value = _num(row, name)
        return f"no {what} yet" if value is None else f"no {what} for {value:.0f} days"

    return phrase


def _score(name: str, what: str, scale: str) -> Callable[[Row], str | None]:
    def phrase(row: Row) -> str | None:
        value = _num(row, name)
        return None if value is None else f"{what} {value:.0f}{scale}"

    return phrase


def _share(name: str, what: str) -> Callable[[Row], str | None]:
    def phrase(row: Row) -> str | None:
        value = _num(row, name)
        return None if value is None else f"{100 * value:.0f}% {what}"

    return phrase


PHRASES: dict[str, Callable[[Row], str | None]] = {
    "days_since_last_order": _recency,
    "last_order_epoch": _recency,
    "overdue_index": _overdue,
    "gap_median_days": _recency,
    "gap_mean_days": _recency,
    "gap_std_days": _recency,
    "last_gap_days": _recency,
    "order_count_30d": _count("order_count_30d", "orders", "30 days"),
    "order_count_90d": _count("order_count_90d", "orders", "90 days"),
    "order_count_180d": _count("order_count_180d", "orders", "180 days"),
    "order_count_365d": _count("order_count_365d", "orders", "a year"),
    "order_count_lifetime": _count("order_count_lifetime", "orders", "total"),
    "order_trend_90d": _trend("order_trend_90d", "orders", "90 days"),
    "spend_trend_90d": _trend("spend_trend_90d", "spend", "90 days"),
    "sessions_trend_30d": _trend("sessions_trend_30d", "visits", "30 days"),
    "email_opens_trend_30d": _trend("email_opens_trend_30d", "e-mail opens", "30 days"),
    "sessions_30d": _count("sessions_30d", "visits", "30 days"),
    "sessions_90d": _count("sessions_90d", "visits", "90 days"),
    "email_opens_30d": _count("email_opens_30d", "e-mail opens", "30 days"),
    "email_opens_90d": _count("email_opens_90d", "e-mail opens", "90 days"),
    "days_since_last_engagement": _days("days_since_last_engagement", "visit or e-mail open"),
    "complaints_30d": _count("complaints_30d", "complaints", "30 days"),
    "complaints_90d": _count("complaints_90d", "complaints", "90 days"),
    "support_tickets_30d": _count("support_tickets_30d", "support tickets", "30 days"),
    "support_tickets_90d": _count("support_tickets_90d", "support tickets", "90 days"),
    "last_nps": _score("last_nps", "last NPS answer", "/10"),
    "last_csat": _score("last_csat", "last CSAT answer", "/5"),
    "return_rate": _share("return_rate", "of orders returned"),
    "tenure_days": _count("tenure_days", "days", "as a customer"),
    "days_since_first_order": _count("days_since_first_order", "days", "since the first order"),
    "purchase_days_lifetime": _count("purchase_days_lifetime", "days with an order", "total"),
    # BG/NBD's readings are functions of recency, frequency and age: said in those words.
    "bgnbd_p_alive": _recency,
    "bgnbd_p_buy_window": _recency,
    "bgnbd_expected_purchases_window": _count(
        "purchase_days_lifetime", "days with an order", "total"
    ),
    "unsubscribes_lifetime": _count("unsubscribes_lifetime", "unsubscribes", "total"),
}


def phrase(feature: str, row: Row) -> str | None:
    """One feature of one customer in plain words; None for an unknown value without a
    phrase of its own (an absence is not a reason)."""
    maker = PHRASES.get(feature)
    text = maker(row) if maker else None
    if text:
        return text
    value = row.get(feature)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    shown = f"{value:.3g}" if isinstance(value, float) else str(value)
    return f"{feature.replace('_', ' ')}: {shown}"


class FrameRow(Mapping):
    """Row ``i`` of a frame's columns (name -> numpy array), read without copying."""

    def __init__(self, columns: Mapping[str, Any], i: int) -> None:
        self._columns, self._i = columns, i

    def __getitem__(self, name: str) -> Any:
        value = self._columns[name][self._i]
        if isinstance(value, np.datetime64):  # a time, kept as a time (not nanoseconds)
            return None if np.isnat(value) else value.astype("datetime64[us]").item()
        return value.item() if hasattr(value, "item") else value

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)


def top_reasons(
    features: list[str], contributions: Sequence[float], row: Row, limit: int = 3
) -> list[str]:
    """The ``limit`` features that raised the score most, phrased, without repeats.

    Args:
        features: the names of the contributions, in order.
        contributions: one customer's SHAP values, one per feature.
        row: the customer's feature values.
    """
    reasons: list[str] = []
    for index in sorted(range(len(features)), key=lambda k: -contributions[k]):
        if contributions[index] <= 0 or len(reasons) >= limit:
            break
        text = phrase(features[index], row)
        if text and text not in reasons:
            reasons.append(text)
    return reasons
