"""Reasons in plain words: why a customer is on a list, as a marketer reads it.

**Churn reasons** (:func:`top_reasons`) turn LightGBM's feature contributions (SHAP values
from ``pred_contrib``) into the customer's own facts: the features that pushed the risk up
most, each phrased from the customer's values ("no order for 94 days; usual gap 31 days").

* **A phrase or no reason, never a dump.** :data:`PHRASES` maps every model feature that
  can explain a score to a phrase maker, which returns a :class:`Reason` (a fact key and
  the text) or None. :data:`NOT_REASONS` lists the features that are facts about the
  customer rather than reasons (country, loyalty tier, consent, the RFM scores and
  segment, the label window), each with why; they, unknown features and values that say
  nothing (a missing NPS answer, a trend of 0, no complaints) give None, never
  ``name: value``.
* **Numbers a person would write.** Counts are whole ("no orders in 90 days", never "0
  orders"); days read "today", "yesterday", then days, months or years (:func:`_span`;
  order timings stay in days up to a year, so they compare with the usual gap); shares
  and probabilities are percentages; money is the shop's currency without a symbol.
* **One reason per fact.** Several features state one fact, and each maker names the fact
  it states: *recency* is ``days_since_last_order`` (and its request-time form),
  ``last_order_epoch``, the gaps, ``overdue_index``, the BG/NBD readings (functions of
  recency, frequency and age), a zero order count or spend in a window and a top-category
  order that is the last order; *orders* are the order counts and purchase days; *contact*
  is the last offer sent and a window without one; *unsubscribed* every unsubscribe
  feature. A zero count in a window is phrased as the recency itself ("no order for 120
  days", not also "no orders in 90 days") when that recency is known and not inside the
  window. :func:`top_reasons` keeps the first reason of each fact, so no two reasons state
  the same number about the same thing.

**Timing reasons** (:func:`timing_reasons`) explain *when* a customer on the
due-to-repurchase list is expected to buy, from the features and the timing scores
(``p_buy_<h>d``, ``median_days_to_next_purchase``, ``overdue``,
``buy_unlikely_within_horizon``): their rhythm, the expected day, how far past their
usual gap they are, the chance of an order and what they buy. They never speak of churn.
**Signup reasons** (:func:`signup_reasons`) describe a customer who signed up without an
order: when they joined, their last activity and the offers they were sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from kizuna.training.horizons import HORIZON_DAYS, HORIZONS

Row = Mapping[str, Any]


class Reason(NamedTuple):
    """One reason: the fact it states (one reason per fact) and its words."""

    fact: str
    text: str


Maker = Callable[[Row], Reason | None]

# How a window suffix reads after "in".
_WINDOWS = {"7d": "7 days", "30d": "30 days", "90d": "90 days", "180d": "180 days"}
_WINDOWS |= {"365d": "the last year"}
_CHANNELS = {"email": "e-mail", "sms": "SMS", "push": "push notifications"}


# --- values and numbers ---------------------------------------------------------------


def _num(row: Row, name: str) -> float | None:
    """A finite number, or None (absent, null, NaN, infinite, not a number)."""
    value = row.get(name)
    if value is None or isinstance(value, str):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _whole(value: float) -> int:
    return math.floor(value + 0.5)  # half up: 0.5 days is a day, not banker's 0


def _count(row: Row, name: str) -> int | None:
    value = _num(row, name)
    return None if value is None else max(0, _whole(value))


def _text(row: Row, name: str) -> str | None:
    value = row.get(name)
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().replace("_", " ")


def _flag(row: Row, name: str) -> bool | None:
    value = row.get(name)
    return bool(value) if isinstance(value, bool | np.bool_) else None


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _span(days: float, exact_below: int = 60) -> str:
    """A length of time as a person says it: days below ``exact_below`` (60), months
    below two years, then years."""
    d = max(0, _whole(days))
    if d < exact_below:
        return _plural(d, "day")
    if d < 730:
        return _plural(_whole(d / 30.44), "month")
    return _plural(_whole(d / 365.25), "year")


def _order_span(days: float) -> str:
    # Order timings are read against the usual gap and the 30 / 90 / 180-day counts.
    return _span(days, exact_below=365)


def _ago(days: float, span: Callable[[float], str] = _span) -> str:
    d = _whole(max(days, 0.0))
    return "today" if d == 0 else "yesterday" if d == 1 else f"{span(days)} ago"


def _share(value: float, most: float = math.inf) -> str:
    pct = _whole(100 * min(value, most))
    return "under 1%" if pct == 0 and value > 0 else f"{pct:,}%"


def _chance(p: float) -> str:
    return f"{min(99, max(1, _whole(100 * p)))}%"  # a model is never sure either way


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


# --- recency: one fact, one phrase ----------------------------------------------------

RECENCY = "recency"


def _days_since_last_order(row: Row) -> float | None:
    for name in ("days_since_last_order", "days_since_last_order_now"):
        value = _num(row, name)
        if value is not None:
            return max(value, 0.0)
    return None


def _never_ordered(row: Row) -> bool:
    """The row says so: a null recency (not an absent one) and no order counted."""
    if _days_since_last_order(row) is not None:
        return False
    if "days_since_last_order" not in row and "days_since_last_order_now" not in row:
        return False
    return not _count(row, "order_count_lifetime")


def _recency(row: Row) -> Reason | None:
    days = _days_since_last_order(row)
    if days is None:
        return Reason(RECENCY, "has never ordered") if _never_ordered(row) else None
    d = _whole(days)
    text = "ordered today" if d == 0 else "ordered yesterday"
    if d > 1:
        text = f"no order for {_order_span(days)}"
    gap = _num(row, "gap_median_days")
    if gap is not None and _whole(gap) >= 1:
        text += f"; usual gap {_order_span(gap)}"
    return Reason(RECENCY, text)


def _recency_and_last_gap(row: Row) -> Reason | None:
    found, last, usual = _recency(row), _num(row, "last_gap_days"), _num(row, "gap_median_days")
    if found is None or last is None or _whole(last) < 1:
        return found
    if usual is not None and _whole(usual) == _whole(last):
        return found
    return Reason(RECENCY, f"{found.text}; last gap {_order_span(last)}")


def _none_in(
    window: str, zero: str, latest: Reason | None, days: float | None, fact: str = RECENCY
) -> Reason:
    """Nothing in a window is the fact of when the latest one was (``latest``, ``days``
    ago, None: never), said with its days; in the window's own words when the latest is
    unknown or (contradicting the count) inside the window."""
    if latest is not None and (days is None or _whole(days) >= int(window.removesuffix("d"))):
        return latest
    return Reason(fact, f"{zero} in {_WINDOWS[window]}")


# --- makers ---------------------------------------------------------------------------


def _counted(name: str, fact: str, some: str, zero: str | None = None) -> Maker:
    """A count in words: ``some`` with ``{n}`` and ``{s}`` (the plural's s), or "one|many";
    0 reads ``zero`` (None: 0 is no reason)."""
    one, many = some.split("|") if "|" in some else (some, some)

    def make(row: Row) -> Reason | None:
        n = _count(row, name)
        if n is None or (n == 0 and zero is None):
            return None
        if n == 0:
            return Reason(fact, zero)
        return Reason(fact, (one if n == 1 else many).format(n=f"{n:,}", s="" if n == 1 else "s"))

    return make


def _windowed(prefix: str, windows: str, fact: str, some: str, zero: str | None = None):
    """:func:`_counted` for each of ``windows`` ("7d 30d") of ``prefix``; ``{w}`` in the
    texts is the window's words."""
    out = {}
    for w in windows.split():
        texts = [t and t.replace("{w}", _WINDOWS[w]) for t in (some, zero)]
        out[f"{prefix}_{w}"] = _counted(f"{prefix}_{w}", fact, *texts)
    return out


def _orders(window: str) -> Maker:
    name = f"order_count_{window}"

    def make(row: Row) -> Reason | None:
        n = _count(row, name)
        if n is None:
            return None
        if n == 0:
            return _none_in(window, "no orders", _recency(row), _days_since_last_order(row))
        return Reason("orders", f"{_plural(n, 'order')} in {_WINDOWS[window]}")

    return make


def _orders_lifetime(name: str, some: str) -> Maker:
    counted = _counted(name, "orders", some)

    def make(row: Row) -> Reason | None:
        return Reason(RECENCY, "has never ordered") if _count(row, name) == 0 else counted(row)

    return make


def _spend(window: str | None) -> Maker:
    name = f"spend_{window or 'lifetime'}"

    def make(row: Row) -> Reason | None:
        value = _num(row, name)
        if value is None:
            return None
        if value <= 0:
            if window is None:
                return Reason(RECENCY, "has never ordered")
            return _none_in(window, "nothing spent", _recency(row), _days_since_last_order(row))
        where = f"in {_WINDOWS[window]}" if window else "so far"
        return Reason("spend", f"spent {_money(value)} {where}")

    return make


def _trend(name: str, fact: str, one: str, many: str, window: str) -> Maker:
    def make(row: Row) -> Reason | None:
        value = _num(row, name)
        n = None if value is None else _whole(abs(value))
        if not n:
            return None
        more = "more" if value > 0 else "fewer"
        return Reason(fact, f"{n:,} {more} {one if n == 1 else many} than in the {window} before")

    return make


def _spend_trend(row: Row) -> Reason | None:
    value = _num(row, "spend_trend_90d")
    if value is None or round(abs(value), 2) == 0:
        return None
    more = "more" if value > 0 else "less"
    return Reason("spend_trend", f"spent {_money(abs(value))} {more} than in the 90 days before")


def _basket(row: Row) -> Reason | None:
    value = _num(row, "avg_order_value")
    if value is None or value <= 0:
        return None
    return Reason("basket", f"orders worth {_money(value)} on average")


def _tenure(row: Row) -> Reason | None:
    days = _num(row, "tenure_days")
    if days is None:
        return None
    d = _whole(max(days, 0.0))
    text = "joined today" if d == 0 else "joined yesterday" if d == 1 else None
    return Reason("tenure", text or f"customer for {_span(days)}")


def _first_order(row: Row) -> Reason | None:
    days = _num(row, "days_since_first_order")
    if days is None:
        return Reason(RECENCY, "has never ordered") if "days_since_first_order" in row else None
    return Reason("tenure", f"first order {_ago(days)}")


def _has_orders(row: Row) -> bool:
    return bool(_count(row, "order_count_lifetime")) or _days_since_last_order(row) is not None


def _discount(name: str, some: str) -> Maker:
    def make(row: Row) -> Reason | None:
        value = _num(row, name)
        if value is None:
            return None
        if value <= 0:
            return Reason("discount", "never used a discount") if _has_orders(row) else None
        if value >= 1 and name == "discounted_order_share":
            return Reason("discount", "every order had a discount")
        return Reason("discount", some.format(p=_share(value, most=1.0)))

    return make


def _return_amount(row: Row) -> Reason | None:
    value = _num(row, "return_amount_365d")
    if value is None or value <= 0:
        return None
    return Reason("returns", f"returned goods worth {_money(value)} in the last year")


def _return_rate(row: Row) -> Reason | None:
    value = _num(row, "return_rate")
    if value is None or value <= 0:
        return None
    return Reason(
        "returns",
        "more returns than orders" if value > 1 else f"{_share(value)} of orders returned",
    )


def _top_category(row: Row) -> Reason | None:
    category, share = _text(row, "top_category"), _num(row, "top_category_share")
    if category is None:
        return None
    if share is not None and share >= 0.995:
        return Reason("top_category", f"buys only {category}")
    shown = f" ({_share(share)} of spend)" if share and share > 0 else ""
    return Reason("top_category", f"buys {category} most{shown}")


def _second_category(row: Row) -> Reason | None:
    category = _text(row, "second_category")
    return None if category is None else Reason("second_category", f"also buys {category}")


def _category_recency(category_name: str, days_name: str, fact: str) -> Maker:
    def make(row: Row) -> Reason | None:
        category, days = _text(row, category_name), _num(row, days_name)
        if category is None or days is None:
            return None
        last = _days_since_last_order(row)
        if last is not None and _whole(last) == _whole(max(days, 0.0)):
            return _recency(row)  # the category's last order is the last order
        d = _whole(max(days, 0.0))
        if d <= 1:
            return Reason(fact, f"bought {category} {'today' if d == 0 else 'yesterday'}")
        return Reason(fact, f"no {category} order for {_order_span(days)}")

    return make


def _engagement(row: Row) -> Reason | None:
    days = _num(row, "days_since_last_engagement")
    if days is None:
        if "days_since_last_engagement" not in row:
            return None
        return Reason("engagement", "has never visited or opened a message")
    d = _whole(max(days, 0.0))
    if d <= 1:
        return Reason("engagement", f"visited or opened a message {_ago(days)}")
    return Reason("engagement", f"no visit or message opened for {_span(days)}")


def _unsubscribed(row: Row) -> Reason | None:
    channels = [words for c, words in _CHANNELS.items() if _flag(row, f"unsubscribed_{c}")]
    if len(channels) == len(_CHANNELS):
        return Reason("unsubscribed", "unsubscribed from all marketing")
    if channels:
        return Reason("unsubscribed", f"unsubscribed from {' and '.join(channels)}")
    n = _count(row, "unsubscribes_lifetime")
    if not n:
        return None
    return Reason("unsubscribed", "unsubscribed once" if n == 1 else f"unsubscribed {n:,} times")


def _survey(score: str, days: str, label: str, scale: int) -> Maker:
    def make(row: Row) -> Reason | None:
        answer, age = _num(row, score), _num(row, days)
        if answer is None or not 0 <= answer <= scale:  # outside the scale: not an answer
            return None
        text = f"last {label} answer {_whole(answer)}/{scale}"
        return Reason(label, text if age is None else f"{text}, {_ago(age)}")

    return make


def _reviews(row: Row) -> Reason | None:
    n, average = _count(row, "reviews_365d"), _num(row, "avg_review_365d")
    if not n:
        return None
    text = f"wrote {_plural(n, 'review')} in the last year"
    if average is not None and 1 <= average <= 5:
        stars = f"{average:.1f}".removesuffix(".0")
        text += f", {stars} star{'' if stars == '1' else 's'}{' on average' if n > 1 else ''}"
    return Reason("reviews", text)


def _contact(row: Row) -> Reason | None:
    days = _num(row, "days_since_last_contact")
    if days is None:
        return (
            Reason("contact", "never sent an offer") if "days_since_last_contact" in row else None
        )
    d = _whole(max(days, 0.0))
    if d <= 1:
        return Reason("contact", f"sent an offer {_ago(days)}")
    return Reason("contact", f"last offer sent {_span(days)} ago")


def _exposures(window: str) -> Maker:
    name = f"exposures_{window}"

    def make(row: Row) -> Reason | None:
        n = _count(row, name)
        if n is None:
            return None
        if n == 0:
            days = _num(row, "days_since_last_contact")
            return _none_in(window, "no offers sent", _contact(row), days, fact="contact")
        return Reason("offers_sent", f"{_plural(n, 'offer')} sent in {_WINDOWS[window]}")

    return make


def _redemptions(row: Row) -> Reason | None:
    n, sent = _count(row, "redemptions_365d"), _count(row, "exposures_365d")
    if n is None or (n == 0 and not sent):
        return None
    if n == 0:  # the number sent is the offers' own fact
        return Reason("redemptions", "redeemed none of the offers sent in the last year")
    return Reason("redemptions", f"redeemed {_plural(n, 'offer')} in the last year")


def _response_rate(row: Row) -> Reason | None:
    rate, sent = _num(row, "offer_response_rate_365d"), _count(row, "exposures_365d")
    if rate is None or (rate <= 0 and not sent):
        return None
    if rate <= 0:
        return Reason("redemptions", "redeemed none of the offers sent in the last year")
    if rate > 1:
        return Reason("redemptions", "redeemed more offers than were sent in the last year")
    return Reason("redemptions", f"redeemed {_share(rate)} of the offers sent in the last year")


# --- the table ------------------------------------------------------------------------

_RECENCY_FEATURES = (
    "days_since_last_order",
    "days_since_last_order_now",
    "last_order_epoch",
    "gap_median_days",
    "gap_mean_days",
    "gap_std_days",
    "overdue_index",
    # BG/NBD's readings are functions of recency, frequency and age: said as the recency.
    "bgnbd_p_alive",
    "bgnbd_p_buy_window",
    "bgnbd_expected_purchases_window",
)
_WEEK_MONTH_QUARTER = "7d 30d 90d"
# Event counts per window: (prefix, windows, fact, text, text for 0 (None: no reason)).
_WINDOWED_COUNTS = (
    ("sessions", _WEEK_MONTH_QUARTER, "visits", "{n} visit{s} in {w}", "no visits in {w}"),
    (
        "page_views",
        _WEEK_MONTH_QUARTER,
        "visits",
        "{n} page{s} viewed in {w}",
        "no pages viewed in {w}",
    ),
    (
        "email_opens",
        _WEEK_MONTH_QUARTER,
        "email",
        "opened {n} e-mail{s} in {w}",
        "opened no e-mails in {w}",
    ),
    (
        "email_clicks",
        _WEEK_MONTH_QUARTER,
        "email",
        "{n} e-mail click{s} in {w}",
        "no e-mail clicks in {w}",
    ),
    (
        "push_opens",
        _WEEK_MONTH_QUARTER,
        "push",
        "opened {n} push notification{s} in {w}",
        "opened no push notifications in {w}",
    ),
    ("support_tickets", "30d 90d", "tickets", "{n} support ticket{s} in {w}"),
    ("complaints", "30d 90d", "complaints", "{n} complaint{s} in {w}"),
    ("return_count", "365d", "returns", "{n} return{s} in {w}"),
    (
        "category_count",
        "365d",
        "breadth",
        "bought from 1 category in {w}|bought from {n} categories in {w}",
    ),
    ("control_assignments", "365d", "control", "held out of {n} campaign{s} as a control in {w}"),
)
PHRASES: dict[str, Maker] = {
    **dict.fromkeys(_RECENCY_FEATURES, _recency),
    "last_gap_days": _recency_and_last_gap,
    **{f"order_count_{w}": _orders(w) for w in ("30d", "90d", "180d", "365d")},
    "order_count_lifetime": _orders_lifetime("order_count_lifetime", "{n} order{s} so far"),
    "purchase_days_lifetime": _orders_lifetime(
        "purchase_days_lifetime", "ordered on a single day so far|ordered on {n} different days"
    ),
    **{f"spend_{w}": _spend(w) for w in ("30d", "90d", "180d", "365d")},
    "spend_lifetime": _spend(None),
    "avg_order_value": _basket,
    "tenure_days": _tenure,
    "days_since_first_order": _first_order,
    "order_trend_90d": _trend("order_trend_90d", "order_trend", "order", "orders", "90 days"),
    "spend_trend_90d": _spend_trend,
    "discount_share": _discount(
        "discount_share", "discounts took {p} off their orders' full price"
    ),
    "discounted_order_share": _discount("discounted_order_share", "{p} of orders had a discount"),
    "return_amount_365d": _return_amount,
    "return_rate": _return_rate,
    "top_category": _top_category,
    "top_category_share": _top_category,
    "days_since_top_category": _category_recency(
        "top_category", "days_since_top_category", "top_category"
    ),
    "second_category": _second_category,
    "days_since_second_category": _category_recency(
        "second_category", "days_since_second_category", "second_category"
    ),
    **{name: maker for counted in _WINDOWED_COUNTS for name, maker in _windowed(*counted).items()},
    "sessions_trend_30d": _trend(
        "sessions_trend_30d", "visits_trend", "visit", "visits", "30 days"
    ),
    "email_opens_trend_30d": _trend(
        "email_opens_trend_30d", "email_trend", "e-mail open", "e-mail opens", "30 days"
    ),
    "days_since_last_engagement": _engagement,
    "unsubscribes_lifetime": _unsubscribed,
    **{f"unsubscribed_{c}": _unsubscribed for c in _CHANNELS},
    "last_nps": _survey("last_nps", "days_since_last_nps", "NPS", 10),
    "days_since_last_nps": _survey("last_nps", "days_since_last_nps", "NPS", 10),
    "last_csat": _survey("last_csat", "days_since_last_csat", "CSAT", 5),
    "days_since_last_csat": _survey("last_csat", "days_since_last_csat", "CSAT", 5),
    "reviews_365d": _reviews,
    "avg_review_365d": _reviews,
    **{f"exposures_{w}": _exposures(w) for w in ("30d", "90d", "365d")},
    "redemptions_365d": _redemptions,
    "offer_response_rate_365d": _response_rate,
    "days_since_last_contact": _contact,
}

#: Model features that are facts about the customer, not reasons: feature -> why.
NOT_REASONS: dict[str, str] = {
    "country": "where the customer lives; nothing a marketer can act on",
    "loyalty_tier": "a label the shop assigned; shown beside the reasons on every list",
    "rfm_segment": "a summary of recency, frequency and spend; shown beside the reasons",
    "rfm_recency_score": "a quintile rank of the recency, which is phrased from its days",
    "rfm_frequency_score": "a quintile rank of the order count, which is phrased itself",
    "rfm_monetary_score": "a quintile rank of the spend, which is phrased itself",
    "consent_email": "a permission, not a behaviour; lists filter by channel",
    "consent_sms": "a permission, not a behaviour; lists filter by channel",
    "consent_push": "a permission, not a behaviour; lists filter by channel",
    "consent_profiling": "customers who opted out are not scored at all",
    "label_window_days": "the length of the model's window, the same for every customer",
}


def reason(feature: str, row: Row) -> Reason | None:
    """One feature of one customer as a :class:`Reason`; None when it is no reason (a
    feature of :data:`NOT_REASONS`, an unknown one, or a value that says nothing)."""
    maker = PHRASES.get(feature)
    return maker(row) if maker else None


def phrase(feature: str, row: Row) -> str | None:
    """One feature of one customer in plain words, or None (see :func:`reason`)."""
    found = reason(feature, row)
    return found.text if found else None


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
    """The ``limit`` features that raised the score most, phrased, one reason per fact.

    Features without a reason (None from :func:`reason`) are passed over, so the next
    ones fill their place; a fact already given (recency from ``days_since_last_order``,
    then again from ``gap_median_days``) is not given twice.

    Args:
        features: the names of the contributions, in order.
        contributions: one customer's SHAP values, one per feature.
        row: the customer's feature values.
        limit: the most reasons returned.
    """
    values = [float(c) if c == c else -math.inf for c in contributions]  # NaN raised nothing
    reasons: list[str] = []
    facts: set[str] = set()
    for index in sorted(range(len(features)), key=lambda k: -values[k]):
        if len(reasons) >= limit or values[index] <= 0:
            break
        found = reason(features[index], row)
        if found is None or found.fact in facts or found.text in reasons:
            continue
        facts.add(found.fact)
        reasons.append(found.text)
    return reasons


# --- timing: when the next order is expected --------------------------------------------


def _rhythm(row: Row) -> str | None:
    days = _days_since_last_order(row)
    if days is None:
        return "has not ordered yet" if _never_ordered(row) else None
    gap = _num(row, "gap_median_days")
    if gap is not None and _whole(gap) >= 1:
        every = "day" if _whole(gap) == 1 else _order_span(gap)
        return f"usually orders every {every}; last order {_ago(days, _order_span)}"
    if _count(row, "purchase_days_lifetime") == 1:
        return f"one order so far, {_ago(days, _order_span)}"
    return f"last order {_ago(days, _order_span)}"


def _expected(row: Row) -> str | None:
    if _flag(row, "buy_unlikely_within_horizon"):
        p = _num(row, f"p_buy_{HORIZON_DAYS}d")
        shown = "" if p is None else f" ({_chance(p)})"
        return f"unlikely to order within {HORIZON_DAYS} days{shown}"
    median = _num(row, "median_days_to_next_purchase")
    if median is None:
        return None
    d = _whole(max(median, 0.0))
    if d <= 1:
        return f"due {'today' if d == 0 else 'tomorrow'} (median)"
    return f"due in about {_plural(d, 'day')} (median)"


def _past_gap(row: Row) -> str | None:
    if _flag(row, "overdue") is not True:
        return None
    days, gap = _days_since_last_order(row), _num(row, "gap_median_days")
    late = None if days is None or gap is None else _whole(days - gap)
    if late is None:
        return "past their usual gap"
    return (
        "just past their usual gap" if late < 1 else f"past their usual gap by {_order_span(late)}"
    )


def _likely(row: Row) -> str | None:
    if _flag(row, "buy_unlikely_within_horizon"):
        return None  # said with the horizon already
    chances = [(h, p) for h in HORIZONS if (p := _num(row, f"p_buy_{h}d")) is not None]
    if not chances:
        return None
    # The first horizon more likely than not (it holds the median), else the longest.
    h, p = next(((h, p) for h, p in chances if p >= 0.5), chances[-1])
    return f"{_chance(p)} likely to order within {h} days"


def _habit(row: Row) -> str | None:
    category, share = _text(row, "top_category"), _num(row, "top_category_share")
    if category is None:
        return None
    if share is not None and share >= 0.995:
        text = f"orders only {category}"
    else:
        shown = f" ({_share(share)} of spend)" if share and share > 0 else ""
        text = f"orders {category} most{shown}"
    since, last = _num(row, "days_since_top_category"), _days_since_last_order(row)
    if since is not None and (last is None or _whole(since) != _whole(last)):
        text += f"; last {category} order {_ago(since, _order_span)}"
    return text


def timing_reasons(row: Row, limit: int = 3) -> list[str]:
    """Why a customer is expected to buy when they are, for the due-to-repurchase list:
    their rhythm and last order, the expected day (or that an order is unlikely within the
    model's horizon), how far past their usual gap they are, the chance of an order and
    what they buy most; the first ``limit`` of those that the row can tell.

    Args:
        row: the customer's features and timing scores (``p_buy_<h>d``,
            ``median_days_to_next_purchase`` in days after the features' time, ``overdue``,
            ``buy_unlikely_within_horizon``), as :meth:`ScoreBook.facts_of` gives them.
        limit: the most reasons returned.
    """
    lines = (_rhythm(row), _expected(row), _past_gap(row), _likely(row), _habit(row))
    return [line for line in lines if line][:limit]


def _joined(row: Row) -> str | None:
    days = _num(row, "tenure_days")
    return None if days is None else f"signed up {_ago(days)}"


def signup_reasons(row: Row, limit: int = 3) -> list[str]:
    """What is known of a customer who signed up without an order, for the
    never-converted list: when they joined, their last visit or opened message, the
    offers they were sent and their recent visits and opens; the first ``limit``.

    Args:
        row: the customer's features (and scores), as :meth:`ScoreBook.facts_of` gives them.
        limit: the most reasons returned.
    """
    lines = [_joined(row)]
    lines += [found.text for found in (_engagement(row), _contact(row)) if found]
    for name in ("sessions_30d", "email_opens_30d"):
        found = PHRASES[name](row)
        if found and _count(row, name):  # activity; its absence is the last visit's
            lines.append(found.text)
    return [line for line in lines if line][:limit]
