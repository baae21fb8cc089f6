"""The feature catalog: every feature Kizuna computes, with its meaning, window and source.

The catalog is the single list that the batch computation (:mod:`kizuna.features.compute`)
fills, the Feast repository turns into schemas, and ``docs/features.md`` is generated from
(``kizuna features catalog --markdown``). A feature without a meaning fails a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kizuna.features.contracts import CONSENT_CHANNELS

FeatureType = Literal["int", "float", "string", "bool"]

#: The feature views, one snapshot table each: name -> what the view holds.
VIEWS: dict[str, str] = {
    "customer_purchases": (
        "Orders and returns: recency, frequency, value, gaps, trends, categories."
    ),
    "customer_engagement": "Sessions, page views, e-mail and push activity, unsubscribes.",
    "customer_service": "Support tickets, complaints and the last NPS and CSAT answers.",
    "customer_offers": "Offer exposures, redemptions and contact pressure.",
    "customer_profile": "Loyalty tier, country, effective consent and the RFM segment.",
}

#: Window lengths in days; a window of N days at cutoff t is the interval (t - N days, t].
PURCHASE_WINDOWS = (30, 90, 180, 365)
ENGAGEMENT_WINDOWS = (7, 30, 90)
SERVICE_WINDOWS = (30, 90)
OFFER_WINDOWS = (30, 90, 365)

#: Engagement counts: feature stem -> (event type, what is counted).
ENGAGEMENT_COUNTS: dict[str, tuple[str, str]] = {
    "sessions": ("session", "Sessions (web or app visits)"),
    "page_views": ("page_view", "Pages viewed: the sum of `page_view` values (1 when empty)"),
    "email_opens": ("email_open", "E-mails opened"),
    "email_clicks": ("email_click", "Clicks in e-mails"),
    "push_opens": ("push_open", "Push notifications opened"),
}
#: Event types that count as engagement for ``days_since_last_engagement``.
ENGAGEMENT_TYPES = tuple(event_type for event_type, _ in ENGAGEMENT_COUNTS.values())

#: RFM segments: name -> (recency scores, FM scores) with FM = floor((F + M) / 2).
#: Every (R, FM) pair in 1-5 x 1-5 falls in exactly one segment; a test checks it.
RFM_SEGMENTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "Champions": ((5,), (4, 5)),
    "Loyal": ((3, 4), (4, 5)),
    "Potential loyalist": ((4, 5), (2, 3)),
    "New customers": ((5,), (1,)),
    "Promising": ((4,), (1,)),
    "Need attention": ((3,), (3,)),
    "About to sleep": ((3,), (1, 2)),
    "At risk": ((1, 2), (3, 4)),
    "Can't lose them": ((1, 2), (5,)),
    "Hibernating": ((2,), (1, 2)),
    "Lost": ((1,), (1, 2)),
}
#: The segment of customers without an order at the cutoff.
NO_PURCHASES = "No purchases"


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name, the view it belongs to, and what it means."""

    name: str
    view: str
    type: FeatureType
    meaning: str
    window: str
    source: str


def _days(n: int) -> str:
    return f"{n} days"


def _scores(scores: tuple[int, ...]) -> str:
    return str(scores[0]) if len(scores) == 1 else f"{scores[0]}-{scores[-1]}"


def _segment_rules() -> str:
    rules = "; ".join(
        f"{name}: R {_scores(r)}, FM {_scores(fm)}" for name, (r, fm) in RFM_SEGMENTS.items()
    )
    return (
        "RFM segment from the recency score R and FM = floor((F + M) / 2) of the frequency "
        f"and monetary scores: {rules}. Customers without an order get '{NO_PURCHASES}'."
    )


_QUINTILE = (
    "among the customers with at least one order at t: 1 + floor(5 x (rank - 1) / n), "
    "ranked ascending with ties sharing the lowest rank, so equal customers get equal "
    "scores; 0 without orders."
)

_P, _E, _S, _O, _C = (
    "customer_purchases",
    "customer_engagement",
    "customer_service",
    "customer_offers",
    "customer_profile",
)


def _purchases() -> list[FeatureSpec]:
    def f(name: str, type_: FeatureType, meaning: str, window: str, source: str = "orders"):
        return FeatureSpec(name, _P, type_, meaning, window, source)

    out = [
        f(
            "days_since_last_order",
            "float",
            "Days from the last order (not a return) to t; null when never.",
            "lifetime",
        ),
        f(
            "last_order_epoch",
            "float",
            "When the last order (not a return) was placed, in Unix seconds; null when never. "
            "Lets request-time features measure recency at the moment of a request.",
            "lifetime",
        ),
    ]
    out += [
        f(f"order_count_{d}d", "int", "Orders placed in the window, returns excluded.", _days(d))
        for d in PURCHASE_WINDOWS
    ]
    out.append(
        f("order_count_lifetime", "int", "Orders placed up to t, returns excluded.", "lifetime")
    )
    out += [
        f(f"spend_{d}d", "float", "Money paid on orders (not returns) in the window.", _days(d))
        for d in PURCHASE_WINDOWS
    ]
    out += [
        f("spend_lifetime", "float", "Money paid on orders (not returns) up to t.", "lifetime"),
        f(
            "tenure_days",
            "float",
            "Days since the customer joined: the earlier of signup_at (when at or before t) "
            "and the first order; null when neither is known.",
            "lifetime",
            "customers, orders",
        ),
        f(
            "days_since_first_order",
            "float",
            "Days from the first order (not a return) to t; null when never. With "
            "purchase_days_lifetime and days_since_last_order it gives the buy-till-you-die "
            "summary (frequency, recency, age) of BG/NBD and Pareto/NBD.",
            "lifetime",
        ),
        f(
            "purchase_days_lifetime",
            "int",
            "Distinct days (UTC) with an order (not a return) up to t: purchase occasions, "
            "as BTYD models count them; 0 without orders.",
            "lifetime",
        ),
        f(
            "avg_order_value",
            "float",
            "spend_lifetime / order_count_lifetime; null without orders.",
            "lifetime",
        ),
        f(
            "gap_mean_days",
            "float",
            "Mean of the gaps in whole days between consecutive distinct order days (UTC); "
            "null with fewer than two order days.",
            "lifetime",
        ),
        f(
            "gap_median_days",
            "float",
            "Median of the gaps between distinct order days; null with fewer than two.",
            "lifetime",
        ),
        f(
            "gap_std_days",
            "float",
            "Sample standard deviation of the gaps between distinct order days; null with "
            "fewer than three order days.",
            "lifetime",
        ),
        f(
            "last_gap_days",
            "float",
            "Days between the last two distinct order days; null with fewer than two.",
            "lifetime",
        ),
        f(
            "overdue_index",
            "float",
            "days_since_last_order / gap_median_days: above 1 means later than the customer's "
            "usual repurchase gap; null when either is null.",
            "lifetime",
        ),
        f(
            "order_trend_90d",
            "int",
            "Orders in the last 90 days minus orders in the 90 days before them.",
            "180 days",
        ),
        f(
            "spend_trend_90d",
            "float",
            "Spend in the last 90 days minus spend in the 90 days before them.",
            "180 days",
        ),
        f(
            "discount_share",
            "float",
            "Discount / (amount + discount) summed over orders; 0 without orders.",
            "lifetime",
        ),
        f(
            "discounted_order_share",
            "float",
            "Share of orders with a discount above 0; 0 without orders.",
            "lifetime",
        ),
        f("return_count_365d", "int", "Returns (is_return rows) in the window.", _days(365)),
        f(
            "return_amount_365d",
            "float",
            "Money given back on returns in the window, as a positive amount.",
            _days(365),
        ),
        f(
            "return_rate",
            "float",
            "Returns / orders, both up to t; 0 without orders.",
            "lifetime",
        ),
    ]
    lines = "orders, order_lines"
    out += [
        f(
            "category_count_365d",
            "int",
            "Distinct product categories bought in the window (breadth); 0 without categorized "
            "order lines.",
            _days(365),
            lines,
        ),
        f(
            "top_category",
            "string",
            "The category with the most line spend (quantity x unit_price) on orders, ties "
            "by name; null without categorized order lines.",
            "lifetime",
            lines,
        ),
        f(
            "top_category_share",
            "float",
            "The top category's share of categorized line spend; 0 without categories.",
            "lifetime",
            lines,
        ),
        f(
            "days_since_top_category",
            "float",
            "Days from the last order with a line in the top category to t (its repurchase "
            "cycle); null without one.",
            "lifetime",
            lines,
        ),
        f(
            "second_category",
            "string",
            "The category with the second most line spend; null with fewer than two.",
            "lifetime",
            lines,
        ),
        f(
            "days_since_second_category",
            "float",
            "Days from the last order with a line in the second category to t; null without.",
            "lifetime",
            lines,
        ),
    ]
    return out


def _engagement() -> list[FeatureSpec]:
    out = [
        FeatureSpec(f"{stem}_{d}d", _E, "int", f"{what} in the window.", _days(d), "events")
        for stem, (_, what) in ENGAGEMENT_COUNTS.items()
        for d in ENGAGEMENT_WINDOWS
    ]
    for stem, what in (("sessions", "Sessions"), ("email_opens", "E-mail opens")):
        out.append(
            FeatureSpec(
                f"{stem}_trend_30d",
                _E,
                "int",
                f"{what} in the last 30 days minus those in the 30 days before them.",
                "60 days",
                "events",
            )
        )
    out += [
        FeatureSpec(
            "days_since_last_engagement",
            _E,
            "float",
            "Days from the last " + ", ".join(ENGAGEMENT_TYPES) + " event to t; null when never.",
            "lifetime",
            "events",
        ),
        FeatureSpec(
            "unsubscribes_lifetime", _E, "int", "Unsubscribe events up to t.", "lifetime", "events"
        ),
    ]
    out += [
        FeatureSpec(
            f"unsubscribed_{ch}",
            _E,
            "bool",
            f"An unsubscribe event on {ch} (or with no channel, which counts for every "
            "channel) at or before t.",
            "lifetime",
            "events",
        )
        for ch in CONSENT_CHANNELS
    ]
    return out


def _service() -> list[FeatureSpec]:
    out = [
        FeatureSpec(f"{stem}_{d}d", _S, "int", f"{what} in the window.", _days(d), "events")
        for stem, what in (
            ("support_tickets", "Support tickets opened"),
            ("complaints", "Complaints"),
        )
        for d in SERVICE_WINDOWS
    ]
    for stem, what, scale in (("nps", "NPS answer", "0-10"), ("csat", "CSAT answer", "1-5")):
        out += [
            FeatureSpec(
                f"last_{stem}",
                _S,
                "float",
                f"The latest {what} ({scale}) at or before t; null when never asked or "
                "never answered.",
                "as of t",
                "events",
            ),
            FeatureSpec(
                f"days_since_last_{stem}",
                _S,
                "float",
                f"Days from the latest {what} to t; null when never.",
                "lifetime",
                "events",
            ),
        ]
    out += [
        FeatureSpec(
            "reviews_365d", _S, "int", "Reviews written in the window.", _days(365), "events"
        ),
        FeatureSpec(
            "avg_review_365d",
            _S,
            "float",
            "Mean review stars (1-5) in the window; null without reviews.",
            _days(365),
            "events",
        ),
    ]
    return out


def _offers() -> list[FeatureSpec]:
    out = [
        FeatureSpec(
            f"exposures_{d}d",
            _O,
            "int",
            "Offers sent (exposures with an offer; control rows excluded) in the window.",
            _days(d),
            "exposures",
        )
        for d in OFFER_WINDOWS
    ]
    out += [
        FeatureSpec(
            "control_assignments_365d",
            _O,
            "int",
            "Times held out as control (exposures without an offer) in the window.",
            _days(365),
            "exposures",
        ),
        FeatureSpec(
            "redemptions_365d",
            _O,
            "int",
            "Orders (not returns) that redeemed an offer (offer_id set) in the window.",
            _days(365),
            "orders",
        ),
        FeatureSpec(
            "offer_response_rate_365d",
            _O,
            "float",
            "redemptions_365d / exposures_365d; 0 without exposures (may exceed 1 when offers "
            "are redeemed without a logged exposure).",
            _days(365),
            "orders, exposures",
        ),
        FeatureSpec(
            "days_since_last_contact",
            _O,
            "float",
            "Days from the last offer sent to t (contact pressure); null when never.",
            "lifetime",
            "exposures",
        ),
    ]
    return out


def _profile() -> list[FeatureSpec]:
    out = [
        FeatureSpec(
            "loyalty_tier", _C, "string", "Loyalty tier; null when unknown.", "as of t", "customers"
        ),
        FeatureSpec(
            "country", _C, "string", "Country as the source has it.", "as of t", "customers"
        ),
    ]
    out += [
        FeatureSpec(
            f"consent_{ch}",
            _C,
            "bool",
            f"Effective {ch} consent at t: the latest word wins. The customer's consent_{ch} "
            f"(with its latest profile change at or before t) is true and no unsubscribe on "
            f"{ch} (or without a channel) happened after that consent was given.",
            "as of t",
            "customers, profile_changes, events",
        )
        for ch in CONSENT_CHANNELS
    ]
    out.append(
        FeatureSpec(
            "consent_profiling",
            _C,
            "bool",
            "The customer allows scoring and profiling; empty means allowed.",
            "as of t",
            "customers",
        )
    )
    for letter, what, by in (
        ("recency", "Recency", "the time of the last order"),
        ("frequency", "Frequency", "order_count_lifetime"),
        ("monetary", "Monetary", "spend_lifetime"),
    ):
        out.append(
            FeatureSpec(
                f"rfm_{letter}_score",
                _C,
                "int",
                f"{what} quintile score 1-5 by {by}, {_QUINTILE}",
                "lifetime",
                "orders",
            )
        )
    out.append(FeatureSpec("rfm_segment", _C, "string", _segment_rules(), "lifetime", "orders"))
    return out


#: Every feature, in the order of the snapshot columns. compute.py produces exactly these
#: columns per view; a test holds the two together.
FEATURES: list[FeatureSpec] = [*_purchases(), *_engagement(), *_service(), *_offers(), *_profile()]


def by_view(view: str) -> list[FeatureSpec]:
    """The features of one view, in catalog order."""
    return [f for f in FEATURES if f.view == view]


def markdown() -> str:
    """docs/features.md: one table per view."""
    out = [
        "# Feature catalog",
        "",
        "Generated by `kizuna features catalog --markdown > docs/features.md` from the code;",
        "a test fails when a feature has no meaning or this file is out of date.",
        "",
        "Every feature is computed as of a cutoff `t` from data at or before `t` only: orders",
        "by `ordered_at`, order lines by their order's `ordered_at`, events by `occurred_at`,",
        'exposures by `sent_at`. A window of N days is the interval (t - N days, t]; "lifetime"',
        "is everything at or before t. Days are 24-hour units, with fractions. A snapshot at t",
        "holds the customers with `signup_at` at or before t (or unknown) and every customer",
        "with an order, event or exposure at or before t. Customers without data of a kind get",
        'counts 0, shares 0, and null for "days since" features and strings.',
        "",
    ]
    for view, text in VIEWS.items():
        out += [
            f"## {view}",
            "",
            text,
            "",
            "| feature | meaning | window | source | type |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| `{f.name}` | {f.meaning} | {f.window} | {f.source} | {f.type} |"
            for f in by_view(view)
        ]
        out.append("")
    return "\n".join(out)
