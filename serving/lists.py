"""The marketer lists, shared by the API, the web page and `kizuna lists`.

Six lists, each a question a retention team asks (:data:`SPECS`):

* **at-risk**: customers who bought and have not lapsed yet (an order within the churn
  model's window) but are likely to stop; most value at risk first. Customers who never
  bought are not here: their value is a cold-start guess, and they have their own list.
* **due-to-repurchase**: customers whose median next purchase falls within N days (or who
  are past their own usual gap and still likely to buy within the timing model's horizon);
  soonest first; the reasons explain the timing.
* **replenishment**: per product category, customers due to buy it again by their own
  cycle for it and the category's (serving/replenishment.py); soonest first.
* **top-value**: buyers with the highest predicted value.
* **win-back**: buyers who have lapsed (no order within the churn window); most spent first.
* **never-converted**: signed-up customers without an order; newest first.

Every list takes the same filters (:class:`ListFilter`), sorts by one of its own columns,
and is paged (``offset``, ``limit``; ``total`` says how many match). Customers who opted out
of profiling are on no list. Columns (JSON keys and CSV header) are :data:`COLUMNS`, with
the replenishment list's own in front (:data:`REPLENISHMENT_COLUMNS`); in CSV the reasons
are a JSON array, so no separator inside a reason can split it.

A list that sorts or filters on a model without a champion raises
:class:`~kizuna.serving.scoring.MissingModelError`; the columns of an absent model that is
not needed are empty.
"""

from __future__ import annotations

import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from kizuna.serving import reasons as phrasing
from kizuna.training.horizons import HORIZON_DAYS

if TYPE_CHECKING:
    from kizuna.serving.scoring import ScoreBook

COLUMNS = [
    "customer_id",
    "loyalty_tier",
    "country",
    "rfm_segment",
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
    "days_since_last_order",
    "spend_lifetime",
    "days_since_last_contact",
    "reasons",
]
# The replenishment list's columns, before the others (customer_id first).
REPLENISHMENT_COLUMNS = [
    "category",
    "purchases",
    "cycle_days",
    "last_bought_date",
    "due_date",
    "days_until_due",
]
RISK_BANDS = ("low", "medium", "high")
# Output column -> the table column it sorts by (a date sorts by its moment).
_SORT_BY = {
    "expected_next_purchase_date": "expected_next_purchase_at",
    "due_date": "due_at",
    "last_bought_date": "last_bought_at",
}


# The sorted rows of the latest lists asked for, so paging through a list or coming back to
# it costs a page, not a sort of every customer (keyed by the list, its filters and order;
# valid while the book's table and the category cycles are the same objects).
ORDERS_KEPT = 16
_ORDERS: OrderedDict[tuple, tuple] = OrderedDict()
_ORDERS_LOCK = threading.Lock()


class ListError(ValueError):
    """A list asked for in a way it cannot answer (an unknown sort column, say)."""


@dataclass(frozen=True)
class ListSpec:
    """One list: what it answers, what it needs, how it sorts and what explains it."""

    name: str
    title: str
    description: str
    models: tuple[str, ...]
    sort: str
    descending: bool
    sortable: tuple[str, ...]
    explains: str  # churn | timing | replenishment | signup
    min_churn: float = 0.0  # the churn floor when a request names none


_SCORES = ("churn_probability", "value_predicted", "value_at_risk", "p_buy_30d")
_FACTS = ("days_since_last_order", "spend_lifetime", "days_since_last_contact", "customer_id")
SPECS: dict[str, ListSpec] = {
    s.name: s
    for s in (
        ListSpec(
            "at-risk",
            "At risk",
            "Buyers who have not lapsed yet but are likely to stop; most value at risk first.",
            ("churn", "value"),
            "value_at_risk",
            True,
            (*_SCORES, *_FACTS),
            "churn",
            0.5,
        ),
        ListSpec(
            "due-to-repurchase",
            "Due to repurchase",
            "Customers expected to buy again within the next days, or past their usual gap; "
            "soonest first.",
            ("repurchase",),
            "expected_next_purchase_date",
            False,
            ("expected_next_purchase_date", *_SCORES, *_FACTS),
            "timing",
        ),
        ListSpec(
            "replenishment",
            "Replenishment",
            "Customers due to rebuy a product category by their own cycle for it; soonest first.",
            (),
            "days_until_due",
            False,
            ("days_until_due", "due_date", "cycle_days", "purchases", *_SCORES, *_FACTS),
            "replenishment",
        ),
        ListSpec(
            "top-value",
            "Top value",
            "Buyers with the highest predicted value.",
            ("value",),
            "value_predicted",
            True,
            (*_SCORES, *_FACTS),
            "churn",
        ),
        ListSpec(
            "win-back",
            "Win-back",
            "Buyers who have lapsed (no order within the churn window); most spent first.",
            ("churn",),
            "spend_lifetime",
            True,
            (*_SCORES, *_FACTS),
            "churn",
        ),
        ListSpec(
            "never-converted",
            "Never converted",
            "Signed-up customers without an order yet; newest first.",
            (),
            "tenure_days",
            False,
            ("tenure_days", *_SCORES, *_FACTS),
            "signup",
        ),
    )
}


# What a campaign's audience can be: every customer the filters keep, or one list.
AUDIENCES = ("all", *SPECS)
# The same, as a type for the API's request bodies and the CLI's options.
AudienceName = Literal[AUDIENCES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class ListFilter:
    """What a marketer narrows a list by, how it is sorted and which page is shown.

    Args:
        min_churn, max_churn: the churn-probability range kept.
        risk_bands: risk bands kept (low, medium, high); empty keeps all.
        min_value: lowest predicted value (over ``value_window_days``).
        segments, tiers, countries: RFM segments, loyalty tiers and countries kept.
        channel: keep customers who consent to this channel.
        not_contacted_days: keep customers sent no offer in this many days.
        category: replenishment: the category; other lists: the customer's top category.
        sort, descending: the column sorted by (one of the list's ``sortable``) and the
            direction; None takes the list's own.
        offset, limit: the page.
    """

    min_churn: float = 0.0
    max_churn: float = 1.0
    risk_bands: tuple[str, ...] = ()
    min_value: float = 0.0
    segments: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    channel: str | None = None
    not_contacted_days: int | None = None
    category: str | None = None
    sort: str | None = None
    descending: bool | None = None
    offset: int = 0
    limit: int = 100


@dataclass
class ListPage:
    """One page of a list: its rows (:data:`COLUMNS`), how many match, and the order."""

    name: str
    rows: pd.DataFrame
    total: int
    offset: int
    limit: int
    sort: str
    descending: bool
    notes: list[str] = field(default_factory=list)


def _churn_window(book: ScoreBook) -> int | None:
    """The churn model's window H: a buyer with no order in H days has lapsed."""
    churn = book.champions.models.get("churn")
    return None if churn is None else int(churn.window_days)


def _require(book: ScoreBook, spec: ListSpec, f: ListFilter) -> None:
    """The list's own models, and those its filters and order read."""
    sort = f.sort or spec.sort
    needed = [
        *spec.models,
        *(["churn"] if f.min_churn > 0 or f.max_churn < 1 or f.risk_bands else []),
        *(["value"] if f.min_value > 0 else []),
        *(["churn"] if sort == "churn_probability" else []),
        *(["value"] if sort == "value_predicted" else []),
        *(["churn", "value"] if sort == "value_at_risk" else []),
        *(["repurchase"] if sort in ("p_buy_30d", "expected_next_purchase_date") else []),
    ]
    book.champions.require(tuple(dict.fromkeys(needed)), f"the {spec.name} list")


def _isin(column: pd.Series, values: tuple[str, ...]) -> pd.Series:
    """Case-insensitive membership (a marketer types "gold" for "Gold")."""
    wanted = {v.casefold() for v in values}
    return column.astype("string").str.casefold().isin(wanted).fillna(False).astype(bool)


def filtered(book: ScoreBook, f: ListFilter) -> pd.DataFrame:
    """The score table's rows the filters keep (profiling opt-outs never)."""
    t = book.table
    keep = t["consent_profiling"].astype("boolean").fillna(True).astype(bool)
    if "churn_probability" in t:
        if f.min_churn > 0:
            keep &= t["churn_probability"] >= f.min_churn
        if f.max_churn < 1:
            keep &= t["churn_probability"] <= f.max_churn
        if f.risk_bands:
            keep &= t["risk_band"].isin(f.risk_bands)
    if f.min_value > 0 and "value_predicted" in t:
        keep &= t["value_predicted"] >= f.min_value
    if f.segments:
        keep &= _isin(t["rfm_segment"], f.segments)
    if f.tiers:
        keep &= _isin(t["loyalty_tier"], f.tiers)
    if f.countries:
        keep &= _isin(t["country"], f.countries)
    if f.channel:
        keep &= t[f"consent_{f.channel}"].astype("boolean").fillna(False).astype(bool)
    if f.not_contacted_days is not None:
        since = t["days_since_last_contact"]
        keep &= since.isna() | (since >= f.not_contacted_days)
    return t[keep]


def audience_of(
    book: ScoreBook,
    name: str,
    f: ListFilter,
    within_days: int = 14,
    replenishment: Callable[[str | None, int], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Every score-table row of list ``name`` under ``f`` (no paging): a campaign's
    audience, in the list's order. ``name`` "all" is every customer the filters keep. The
    replenishment list's rows are its customers' (once each)."""
    if name == "all":
        return filtered(book, f)
    spec = SPECS.get(name)
    if spec is None:
        raise ListError(f"unknown list {name!r}; the lists are all, {', '.join(SPECS)}")
    rows, _ = _select(book, spec, f, within_days, replenishment)
    key = _SORT_BY.get(spec.sort, spec.sort)
    rows = rows.sort_values([key, "customer_id"], ascending=[not spec.descending, True])
    return rows.drop_duplicates("customer_id")[list(book.table.columns)]


def _bought(t: pd.DataFrame) -> pd.Series:
    return t["profile_order_count_lifetime"].fillna(0) > 0


def _select(
    book: ScoreBook,
    spec: ListSpec,
    f: ListFilter,
    within_days: int,
    replenishment: Callable[[str | None, int], pd.DataFrame] | None,
) -> tuple[pd.DataFrame, list[str]]:
    """The list's rows before sorting and paging, and notes on how it was drawn."""
    _require(book, spec, f)
    rows, notes = filtered(book, f), []
    if f.category and spec.name != "replenishment":
        rows = rows[_isin(rows["top_category"], (f.category,))]
    window = _churn_window(book)
    if spec.name == "at-risk":
        rows = rows[_bought(rows) & (rows["days_since_last_order"] <= window)]
        rows = rows[rows["churn_probability"] >= max(f.min_churn, 0.0)]
        notes.append(f"buyers with an order in the last {window} days (the churn window)")
    elif spec.name == "win-back":
        rows = rows[_bought(rows) & (rows["days_since_last_order"] > window)]
        notes.append(f"buyers with no order in the last {window} days (the churn window)")
    elif spec.name == "top-value":
        rows = rows[_bought(rows)]
    elif spec.name == "never-converted":
        rows = rows[~_bought(rows)]
    elif spec.name == "due-to-repurchase":
        horizon = pd.Timestamp(book.built_at + timedelta(days=within_days))
        due = rows["expected_next_purchase_at"] <= horizon
        due |= rows["overdue"].eq(True) & ~rows["buy_unlikely_within_horizon"].astype(bool)
        rows = rows[due]
    elif spec.name == "replenishment":
        if replenishment is None:
            raise ListError("the replenishment list needs the lake's order lines")
        cycles = replenishment(f.category, within_days)
        cycles = cycles[cycles["status"] == "due"]
        rows = rows[rows["customer_id"].isin(cycles["customer_id"])]  # merge the few only
        rows = cycles.merge(rows, on="customer_id", how="inner", suffixes=("", "_book"))
        notes.append(f"category cycles as of {_as_of(cycles)}")
    return rows, notes


def _as_of(cycles: pd.DataFrame) -> str:
    at = cycles.attrs.get("as_of")
    return "the data's end" if at is None else pd.Timestamp(at).strftime("%Y-%m-%d")


def run(
    book: ScoreBook,
    name: str,
    f: ListFilter,
    *,
    within_days: int = 14,
    replenishment: Callable[[str | None, int], pd.DataFrame] | None = None,
) -> ListPage:
    """One page of list ``name``.

    Args:
        book: the scores.
        name: one of :data:`SPECS`.
        f: filters, order and page.
        within_days: due-to-repurchase and replenishment: due within this many days.
        replenishment: ``(category, within_days) -> cycles`` (serving/replenishment.py).

    Raises:
        ListError: an unknown list or sort column.
        MissingModelError: a model the list, its filters or its order need is not served.
    """
    spec = SPECS.get(name)
    if spec is None:
        raise ListError(f"unknown list {name!r}; the lists are {', '.join(SPECS)}")
    sort = f.sort or spec.sort
    if sort not in spec.sortable:
        raise ListError(
            f"the {name} list cannot sort by {sort!r}; choose one of {', '.join(spec.sortable)}"
        )
    descending = spec.descending if f.descending is None else f.descending
    whole = replace(f, offset=0, limit=0)
    source = getattr(replenishment, "source", None)
    key = (name, whole, sort, descending, within_days, id(source))
    table = book.table
    with _ORDERS_LOCK:
        entry = _ORDERS.get(key)
        if entry is not None and entry[0] is table and entry[1] is source:
            _ORDERS.move_to_end(key)
    cacheable = replenishment is None or source is not None  # a bare callable: no key
    if not cacheable or entry is None or entry[0] is not table or entry[1] is not source:
        rows, notes = _select(book, spec, f, within_days, replenishment)
        rows = rows.sort_values(
            [_SORT_BY.get(sort, sort), "customer_id"],
            ascending=[not descending, True],
            na_position="last",
            kind="stable",
        )
        entry = (table, source, rows, notes)
        with _ORDERS_LOCK:
            if cacheable:
                _ORDERS[key] = entry
            while len(_ORDERS) > ORDERS_KEPT:
                _ORDERS.popitem(last=False)
    rows, notes = entry[2], entry[3]
    page = rows.iloc[f.offset : f.offset + f.limit]
    return ListPage(
        name, _shape(book, spec, page), len(rows), f.offset, f.limit, sort, descending, list(notes)
    )


def _reasons(book: ScoreBook, spec: ListSpec, rows: pd.DataFrame) -> list[list[str]]:
    ids = list(rows["customer_id"])
    if spec.explains == "churn":
        return book.reasons_of(ids)
    if spec.explains == "replenishment":
        return [list(r) for r in rows["reasons"]]
    facts = book.facts_of(ids)
    if spec.explains == "timing":
        return [phrasing.timing_reasons(row) if row else [] for row in facts]
    return [phrasing.signup_reasons(row) if row else [] for row in facts]


def _shape(book: ScoreBook, spec: ListSpec, rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.copy()
    if "expected_next_purchase_at" in out:  # absent without a repurchase model
        for day in ("", "_p25", "_p75"):  # NaT (beyond the horizon) -> empty
            at = out[f"expected_next_purchase{day}_at"]
            out[f"expected_next_purchase{day}_date"] = at.dt.strftime("%Y-%m-%d")
        unlikely = out["buy_unlikely_within_horizon"].astype(bool)
        flags = [HORIZON_DAYS if u else None for u in unlikely]  # an int or empty, not 90.0
        out["unlikely_within_days"] = pd.Series(flags, index=out.index, dtype=object)
    columns = COLUMNS
    if spec.name == "replenishment":
        for day in ("due", "last_bought"):
            moment = pd.to_datetime(out[_SORT_BY[f"{day}_date"]], utc=True)
            out[f"{day}_date"] = moment.dt.strftime("%Y-%m-%d")
        columns = [COLUMNS[0], *REPLENISHMENT_COLUMNS, *COLUMNS[1:]]
    out["reasons"] = _reasons(book, spec, out)
    return out.reindex(columns=columns).reset_index(drop=True)  # absent models: empty


def _value(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def to_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as JSON-ready dicts (NaN -> None)."""
    return [{k: _value(v) for k, v in r.items()} for r in rows.to_dict("records")]


def to_json(page: ListPage) -> dict[str, Any]:
    """A page as the API answers it."""
    return {
        "list": page.name,
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "count": len(page.rows),
        "sort": page.sort,
        "order": "desc" if page.descending else "asc",
        "notes": page.notes,
        "customers": to_records(page.rows),
    }


def to_csv(rows: pd.DataFrame) -> str:
    """The rows as CSV; reasons as a JSON array in one cell."""
    out = rows.copy()
    out["reasons"] = out["reasons"].map(lambda r: json.dumps(list(r or []), ensure_ascii=False))
    buffer = io.StringIO()
    out.to_csv(buffer, index=False, float_format="%.6g")
    return buffer.getvalue()
