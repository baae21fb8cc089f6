"""The SQL behind the feature snapshots: one query builder per feature view.

Each builder returns one DuckDB ``SELECT`` that produces, for the population at cutoff
``t``, ``customer_id``, ``event_timestamp`` (= ``t``) and the view's features in catalog
order. Builders name every feature once in a ``{feature: expression}`` mapping; the final
``SELECT`` walks the catalog, so a feature the catalog lists but no builder computes (or
the reverse) fails at once instead of shifting columns.

Time is handled so the queries give the same answer in any session time zone: window
bounds are literals computed in Python, days are differences of epoch microseconds, and
order days are taken in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from kizuna.features.catalog import (
    CONSENT_CHANNELS,
    ENGAGEMENT_COUNTS,
    ENGAGEMENT_TYPES,
    ENGAGEMENT_WINDOWS,
    NO_PURCHASES,
    OFFER_WINDOWS,
    PURCHASE_WINDOWS,
    RFM_SEGMENTS,
    SERVICE_WINDOWS,
    by_view,
)
from kizuna.features.contracts import PROFILE_FIELDS

if TYPE_CHECKING:
    from kizuna.features.compute import Tables

SQL_TYPES = {"int": "BIGINT", "float": "DOUBLE", "string": "VARCHAR", "bool": "BOOLEAN"}
DAY_US = 86_400_000_000


def summed(expr: str, where: str | None = None) -> str:
    """A sum of money that does not depend on the order DuckDB's threads add it up in.

    The amounts are whole cents, so the double sum, rounded to six places, is the same
    number however the rows were split: a snapshot of the same lake is the same, to the
    last bit (LightGBM's bins otherwise move with 1e-13 and a retrained model changes).
    """
    aggregate = f"sum({expr})" if where is None else f"sum({expr}) FILTER (WHERE {where})"
    return f"round({aggregate}, 6)"


def timestamp_literal(moment: datetime) -> str:
    """A TIMESTAMPTZ literal for an aware datetime."""
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat()}'"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Cut:
    """The cutoff ``t`` of one snapshot and the SQL fragments that depend on it.

    ``customer_ids`` restricts the snapshot to those customers; ``population_table`` names
    a table that already holds the snapshot's customers (built once for all views).
    """

    def __init__(
        self,
        cutoff: datetime,
        customer_ids: Sequence[str] | None = None,
        population_table: str | None = None,
    ) -> None:
        self.cutoff = cutoff
        self.population_table = population_table
        self.t = timestamp_literal(cutoff)
        if customer_ids is None:
            self.only = ""
        elif len(customer_ids) == 0:
            self.only = " AND false"
        else:
            self.only = f" AND customer_id IN ({', '.join(_quoted(c) for c in customer_ids)})"

    def ago(self, days: int) -> str:
        """The moment ``days`` days before t."""
        return timestamp_literal(self.cutoff - timedelta(days=days))

    def within(self, column: str, days: int, ending_days_ago: int = 0) -> str:
        """``column`` in the window of ``days`` days ending ``ending_days_ago`` days before t."""
        cond = f"{column} > {self.ago(days + ending_days_ago)}"
        if ending_days_ago:
            cond += f" AND {column} <= {self.ago(ending_days_ago)}"
        return cond

    def days_since(self, column: str) -> str:
        """Days (with fractions) from ``column`` to t; null when ``column`` is null."""
        return f"(epoch_us({self.t}) - epoch_us({column})) / {DAY_US}.0"


def population_sql(tables: Tables, cut: Cut) -> str:
    """The customers of a snapshot: signed up by t, or active (ordered, engaged, contacted) by t.

    A customer without a signup date is counted from their first activity, never earlier:
    otherwise snapshots before they appeared would show an empty history that "buys next".
    """
    if cut.population_table is not None:  # computed once for all views of a cutoff
        return f"population AS (SELECT customer_id FROM {cut.population_table})"
    t, only = cut.t, cut.only
    return f"""population AS (
    SELECT customer_id FROM {tables.customers} AS src
    WHERE signup_at <= {t}{only}
    UNION SELECT customer_id FROM {tables.orders} AS src WHERE ordered_at <= {t}{only}
    UNION SELECT customer_id FROM {tables.events} AS src WHERE occurred_at <= {t}{only}
    UNION SELECT customer_id FROM {tables.exposures} AS src WHERE sent_at <= {t}{only}
)"""


def _snapshot(view: str, cut: Cut, ctes: list[str], joins: str, features: dict[str, str]) -> str:
    specs = by_view(view)
    names = [s.name for s in specs]
    if set(names) != set(features):
        raise RuntimeError(
            f"{view}: the catalog and the query disagree; catalog only: "
            f"{sorted(set(names) - set(features))}, query only: "
            f"{sorted(set(features) - set(names))}"
        )
    columns = ",\n    ".join(
        f"CAST({features[s.name]} AS {SQL_TYPES[s.type]}) AS {s.name}" for s in specs
    )
    return (
        "WITH " + ",\n".join(ctes) + "\n"
        f"SELECT p.customer_id, {cut.t} AS event_timestamp,\n    {columns}\n"
        f"FROM population AS p {joins}"
    )


def _orders_sql(tables: Tables, cut: Cut) -> str:
    # Not materialized: each use reads only the columns it needs from Parquet, which at
    # 20 M orders is cheaper than writing all of them aside (and spilling) first.
    return f"""o AS NOT MATERIALIZED (
    SELECT customer_id, order_id, ordered_at, amount,
           coalesce(discount_amount, 0) AS discount_amount,
           coalesce(is_return, false) AS is_return
    FROM {tables.orders} AS src WHERE ordered_at <= {cut.t}{cut.only}
)"""


def purchases_sql(tables: Tables, cut: Cut) -> str:
    """customer_purchases: recency, frequency, spend, gaps, trends, returns, categories."""
    sales = "NOT is_return"
    within = {d: f"{sales} AND {cut.within('ordered_at', d)}" for d in PURCHASE_WINDOWS}
    windowed = [
        f"count(*) FILTER (WHERE {within[d]}) AS orders_{d}d,\n"
        f"    {summed('amount', within[d])} AS spend_{d}d"
        for d in PURCHASE_WINDOWS
    ]
    windowed_sql = ",\n    ".join(windowed)
    prior = cut.within("ordered_at", 90, ending_days_ago=90)
    year = cut.within("ordered_at", 365)
    ctes = [
        population_sql(tables, cut),
        _orders_sql(tables, cut),
        f"""order_totals AS (
    SELECT customer_id,
    max(ordered_at) FILTER (WHERE {sales}) AS last_order_at,
    min(ordered_at) FILTER (WHERE {sales}) AS first_order_at,
    count(*) FILTER (WHERE {sales}) AS orders_lifetime,
    {summed("amount", sales)} AS spend_lifetime,
    {windowed_sql},
    count(*) FILTER (WHERE {sales} AND {prior}) AS orders_prior_90d,
    {summed("amount", f"{sales} AND {prior}")} AS spend_prior_90d,
    {summed("discount_amount", sales)} AS discount_lifetime,
    count(*) FILTER (WHERE {sales} AND discount_amount > 0) AS discounted_orders,
    count(*) FILTER (WHERE is_return AND {year}) AS returns_365d,
    -{summed("amount", f"is_return AND {year}")} AS return_amount_365d,
    count(*) FILTER (WHERE is_return) AS returns_lifetime,
    list(CAST(timezone('UTC', ordered_at) AS DATE)) FILTER (WHERE {sales}) AS order_days
    FROM o GROUP BY customer_id
)""",
        # Gaps between distinct order days (two orders on one day are one purchase occasion),
        # from each customer's sorted list of order days: cheaper than a window over orders.
        """gaps AS (
    SELECT customer_id, [d[i + 1] - d[i] for i in range(1, len(d)) if d[i + 1] > d[i]] AS gaps
    FROM (SELECT customer_id, list_sort(order_days) AS d FROM order_totals)
)""",
        f"""category_spend AS (
    SELECT o.customer_id, l.category, {summed("l.quantity * l.unit_price")} AS spend,
           max(o.ordered_at) AS last_at, bool_or({cut.within("o.ordered_at", 365)}) AS in_365d
    FROM {tables.order_lines} AS l JOIN o USING (order_id)
    WHERE l.category IS NOT NULL AND NOT o.is_return
    GROUP BY o.customer_id, l.category
)""",
        """category_ranks AS (
    SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY spend DESC, category) AS rank,
           round(sum(spend) OVER (PARTITION BY customer_id), 6) AS total
    FROM category_spend
)""",
        """categories AS (
    SELECT customer_id, count(*) FILTER (WHERE in_365d) AS category_count_365d,
           any_value(category) FILTER (WHERE rank = 1) AS top_category,
           any_value(spend / nullif(total, 0)) FILTER (WHERE rank = 1) AS top_share,
           any_value(last_at) FILTER (WHERE rank = 1) AS top_last_at,
           any_value(category) FILTER (WHERE rank = 2) AS second_category,
           any_value(last_at) FILTER (WHERE rank = 2) AS second_last_at
    FROM category_ranks GROUP BY customer_id
)""",
        f"""signups AS (
    SELECT customer_id, min(signup_at) AS signup_at FROM {tables.customers} AS src
    WHERE signup_at <= {cut.t}{cut.only} GROUP BY customer_id
)""",
    ]
    joins = (
        "LEFT JOIN order_totals AS a USING (customer_id) "
        "LEFT JOIN gaps AS g USING (customer_id) "
        "LEFT JOIN categories AS k USING (customer_id) "
        "LEFT JOIN signups AS s USING (customer_id)"
    )
    recency = cut.days_since("a.last_order_at")
    # The moment itself, so a request-time feature can bring recency forward to "now".
    f = {"days_since_last_order": recency, "last_order_epoch": "epoch(a.last_order_at)"}
    f |= {f"order_count_{d}d": f"coalesce(a.orders_{d}d, 0)" for d in PURCHASE_WINDOWS}
    f["order_count_lifetime"] = "coalesce(a.orders_lifetime, 0)"
    f |= {f"spend_{d}d": f"coalesce(a.spend_{d}d, 0)" for d in PURCHASE_WINDOWS}
    f |= {
        "spend_lifetime": "coalesce(a.spend_lifetime, 0)",
        "tenure_days": cut.days_since("least(s.signup_at, a.first_order_at)"),
        "days_since_first_order": cut.days_since("a.first_order_at"),
        "purchase_days_lifetime": "coalesce(len(list_distinct(a.order_days)), 0)",
        "avg_order_value": "a.spend_lifetime / nullif(a.orders_lifetime, 0)",
        "gap_mean_days": "list_avg(g.gaps)",
        "gap_median_days": "list_median(g.gaps)",
        "gap_std_days": "list_stddev_samp(g.gaps)",
        "last_gap_days": "g.gaps[-1]",
        "overdue_index": f"{recency} / list_median(g.gaps)",
        "order_trend_90d": "coalesce(a.orders_90d, 0) - coalesce(a.orders_prior_90d, 0)",
        "spend_trend_90d": "coalesce(a.spend_90d, 0) - coalesce(a.spend_prior_90d, 0)",
        "discount_share": "coalesce(a.discount_lifetime / "
        "nullif(a.spend_lifetime + a.discount_lifetime, 0), 0)",
        "discounted_order_share": "coalesce(a.discounted_orders / nullif(a.orders_lifetime, 0), 0)",
        "return_count_365d": "coalesce(a.returns_365d, 0)",
        "return_amount_365d": "coalesce(a.return_amount_365d, 0)",
        "return_rate": "coalesce(a.returns_lifetime / nullif(a.orders_lifetime, 0), 0)",
        "category_count_365d": "coalesce(k.category_count_365d, 0)",
        "top_category": "k.top_category",
        "top_category_share": "coalesce(k.top_share, 0)",
        "days_since_top_category": cut.days_since("k.top_last_at"),
        "second_category": "k.second_category",
        "days_since_second_category": cut.days_since("k.second_last_at"),
    }
    return _snapshot("customer_purchases", cut, ctes, joins, f)


def _unsubscribed(channel: str) -> str:
    # An unsubscribe without a channel withdraws every channel: the safe reading for consent.
    return f"bool_or(type = 'unsubscribe' AND coalesce(channel, '{channel}') = '{channel}')"


def _events_sql(tables: Tables, cut: Cut) -> str:
    return f"""e AS (
    SELECT customer_id, event_id, occurred_at, type, value, channel
    FROM {tables.events} AS src WHERE occurred_at <= {cut.t}{cut.only}
)"""


def engagement_sql(tables: Tables, cut: Cut) -> str:
    """customer_engagement: sessions, page views, opens and clicks, unsubscribes."""
    aggregates: list[str] = []
    for stem, (event_type, _) in ENGAGEMENT_COUNTS.items():
        measure = "sum(coalesce(value, 1))" if event_type == "page_view" else "count(*)"
        for d in ENGAGEMENT_WINDOWS:
            aggregates.append(
                f"{measure} FILTER (WHERE type = '{event_type}' AND "
                f"{cut.within('occurred_at', d)}) AS {stem}_{d}d"
            )
    trends = {"sessions": "session", "email_opens": "email_open"}
    for stem, event_type in trends.items():
        aggregates.append(
            f"count(*) FILTER (WHERE type = '{event_type}' AND "
            f"{cut.within('occurred_at', 30, ending_days_ago=30)}) AS {stem}_prior_30d"
        )
    engaged = ", ".join(f"'{t}'" for t in ENGAGEMENT_TYPES)
    aggregates += [
        f"max(occurred_at) FILTER (WHERE type IN ({engaged})) AS last_engagement_at",
        "count(*) FILTER (WHERE type = 'unsubscribe') AS unsubscribes",
        *(f"{_unsubscribed(ch)} AS unsubscribed_{ch}" for ch in CONSENT_CHANNELS),
    ]
    ctes = [
        population_sql(tables, cut),
        _events_sql(tables, cut),
        "activity AS (\n    SELECT customer_id,\n    "
        + ",\n    ".join(aggregates)
        + "\n    FROM e GROUP BY customer_id\n)",
    ]
    f = {
        f"{stem}_{d}d": f"coalesce(a.{stem}_{d}d, 0)"
        for stem in ENGAGEMENT_COUNTS
        for d in ENGAGEMENT_WINDOWS
    }
    f |= {
        f"{stem}_trend_30d": f"coalesce(a.{stem}_30d, 0) - coalesce(a.{stem}_prior_30d, 0)"
        for stem in trends
    }
    f |= {
        "days_since_last_engagement": cut.days_since("a.last_engagement_at"),
        "unsubscribes_lifetime": "coalesce(a.unsubscribes, 0)",
    }
    f |= {f"unsubscribed_{ch}": f"coalesce(a.unsubscribed_{ch}, false)" for ch in CONSENT_CHANNELS}
    return _snapshot(
        "customer_engagement", cut, ctes, "LEFT JOIN activity AS a USING (customer_id)", f
    )


def service_sql(tables: Tables, cut: Cut) -> str:
    """customer_service: tickets, complaints, the last NPS and CSAT, reviews."""
    aggregates = [
        f"count(*) FILTER (WHERE type = '{event_type}' AND {cut.within('occurred_at', d)}) "
        f"AS {stem}_{d}d"
        for stem, event_type in (("support_tickets", "support_ticket"), ("complaints", "complaint"))
        for d in SERVICE_WINDOWS
    ]
    for stem, event_type in (("nps", "nps_response"), ("csat", "csat_response")):
        answered = f"type = '{event_type}' AND value IS NOT NULL"
        # The event id breaks ties between answers at the same moment, so reruns agree.
        aggregates += [
            f"arg_max(value, (occurred_at, event_id)) FILTER (WHERE {answered}) AS last_{stem}",
            f"max(occurred_at) FILTER (WHERE {answered}) AS last_{stem}_at",
        ]
    year = cut.within("occurred_at", 365)
    aggregates += [
        f"count(*) FILTER (WHERE type = 'review' AND {year}) AS reviews_365d",
        f"avg(value) FILTER (WHERE type = 'review' AND {year}) AS avg_review_365d",
    ]
    ctes = [
        population_sql(tables, cut),
        _events_sql(tables, cut),
        "service AS (\n    SELECT customer_id,\n    "
        + ",\n    ".join(aggregates)
        + "\n    FROM e GROUP BY customer_id\n)",
    ]
    f = {
        f"{stem}_{d}d": f"coalesce(a.{stem}_{d}d, 0)"
        for stem in ("support_tickets", "complaints")
        for d in SERVICE_WINDOWS
    }
    for stem in ("nps", "csat"):
        f[f"last_{stem}"] = f"a.last_{stem}"
        f[f"days_since_last_{stem}"] = cut.days_since(f"a.last_{stem}_at")
    f |= {"reviews_365d": "coalesce(a.reviews_365d, 0)", "avg_review_365d": "a.avg_review_365d"}
    return _snapshot("customer_service", cut, ctes, "LEFT JOIN service AS a USING (customer_id)", f)


def offers_sql(tables: Tables, cut: Cut) -> str:
    """customer_offers: offers sent, control assignments, redemptions, contact pressure."""
    sent = [
        f"count(*) FILTER (WHERE offer_id IS NOT NULL AND {cut.within('sent_at', d)}) "
        f"AS exposures_{d}d"
        for d in OFFER_WINDOWS
    ]
    ctes = [
        population_sql(tables, cut),
        f"""contacts AS (
    SELECT customer_id, {", ".join(sent)},
    count(*) FILTER (WHERE offer_id IS NULL AND {cut.within("sent_at", 365)}) AS control_365d,
    max(sent_at) FILTER (WHERE offer_id IS NOT NULL) AS last_contact_at
    FROM {tables.exposures} AS src WHERE sent_at <= {cut.t}{cut.only} GROUP BY customer_id
)""",
        f"""redemptions AS (
    SELECT customer_id, count(*) AS redemptions_365d FROM {tables.orders} AS src
    WHERE ordered_at <= {cut.t} AND {cut.within("ordered_at", 365)} AND offer_id IS NOT NULL
      AND NOT coalesce(is_return, false){cut.only}
    GROUP BY customer_id
)""",
    ]
    joins = (
        "LEFT JOIN contacts AS x USING (customer_id) LEFT JOIN redemptions AS r USING (customer_id)"
    )
    f = {f"exposures_{d}d": f"coalesce(x.exposures_{d}d, 0)" for d in OFFER_WINDOWS}
    f |= {
        "control_assignments_365d": "coalesce(x.control_365d, 0)",
        "redemptions_365d": "coalesce(r.redemptions_365d, 0)",
        "offer_response_rate_365d": "coalesce(r.redemptions_365d / "
        f"nullif(x.exposures_{max(OFFER_WINDOWS)}d, 0), 0)",
        "days_since_last_contact": cut.days_since("x.last_contact_at"),
    }
    return _snapshot("customer_offers", cut, ctes, joins, f)


def _quintile(order_by: str) -> str:
    # Ties share a score (rank, not row_number): equal customers never land in two quintiles.
    return f"CAST(1 + floor(5 * (rank() OVER (ORDER BY {order_by}) - 1) / count(*) OVER ()) AS INT)"


def _segment_case() -> str:
    fm = "(rfm.f + rfm.m) // 2"
    whens = " ".join(
        f"WHEN rfm.r IN ({', '.join(map(str, r))}) AND {fm} IN ({', '.join(map(str, m))}) "
        f"THEN {_quoted(name)}"
        for name, (r, m) in RFM_SEGMENTS.items()
    )
    return f"CASE WHEN rfm.r IS NULL THEN {_quoted(NO_PURCHASES)} {whens} END"


def latest_changes_sql() -> str:
    """Each profile field's latest non-empty value (by ``changed_at``) among a customer's
    ``profile_changes`` rows: the select list of a ``GROUP BY customer_id``."""
    return ", ".join(
        f"arg_max({f}, changed_at) FILTER (WHERE {f} IS NOT NULL) AS {f}" for f in PROFILE_FIELDS
    )


def _last_unsubscribe(channel: str) -> str:
    return (
        f"max(occurred_at) FILTER (WHERE coalesce(channel, '{channel}') = '{channel}') "
        f"AS unsubscribed_{channel}_at"
    )


def _consent(channel: str) -> str:
    """Effective consent on a channel: the latest word wins. A consent given (or renewed) by
    a profile change after the last unsubscribe stands; an unsubscribe at or after the
    consent withdraws it (the customer row's consent dates from before every event)."""
    unsub, given = f"u.unsubscribed_{channel}_at", f"c.consent_{channel}_at"
    return (
        f"coalesce(c.consent_{channel}, false) AND NOT coalesce({unsub} >= {given}, "
        f"{unsub} IS NOT NULL)"
    )


def profile_sql(tables: Tables, cut: Cut) -> str:
    """customer_profile: tier, country, effective consent, RFM scores and segment."""
    flags = ", ".join(_last_unsubscribe(ch) for ch in CONSENT_CHANNELS)
    given = ", ".join(
        f"max(changed_at) FILTER (WHERE consent_{ch} IS NOT NULL) AS consent_{ch}_at"
        for ch in CONSENT_CHANNELS
    )
    ctes = [
        population_sql(tables, cut),
        # The customer row overlaid with each field's latest change at or before t.
        f"""base_profile AS (
    SELECT DISTINCT ON (customer_id) customer_id, {", ".join(PROFILE_FIELDS)}
    FROM {tables.customers} AS src WHERE true{cut.only}
)""",
        f"""profile_changed AS (
    SELECT customer_id, {latest_changes_sql()}, {given}
    FROM {tables.profile_changes} AS src WHERE changed_at <= {cut.t}{cut.only}
    GROUP BY customer_id
)""",
        f"""profile AS (
    SELECT coalesce(b.customer_id, c.customer_id) AS customer_id,
           {", ".join(f"coalesce(c.{f}, b.{f}) AS {f}" for f in PROFILE_FIELDS)},
           {", ".join(f"c.consent_{ch}_at" for ch in CONSENT_CHANNELS)}
    FROM base_profile b FULL JOIN profile_changed c USING (customer_id)
)""",
        f"""unsubscribes AS (
    SELECT customer_id, {flags} FROM {tables.events} AS src
    WHERE type = 'unsubscribe' AND occurred_at <= {cut.t}{cut.only} GROUP BY customer_id
)""",
        # Quintiles rank every buyer at t, whoever the snapshot is for: no customer filter.
        f"""buyers AS (
    SELECT customer_id, max(ordered_at) AS last_order_at, count(*) AS orders,
           {summed("amount")} AS spend
    FROM {tables.orders} AS src
    WHERE ordered_at <= {cut.t} AND NOT coalesce(is_return, false) GROUP BY customer_id
)""",
        f"""rfm AS (
    SELECT customer_id, {_quintile("last_order_at")} AS r, {_quintile("orders")} AS f,
           {_quintile("spend")} AS m
    FROM buyers
)""",
    ]
    joins = (
        "LEFT JOIN profile AS c USING (customer_id) "
        "LEFT JOIN unsubscribes AS u USING (customer_id) "
        "LEFT JOIN rfm USING (customer_id)"
    )
    f = {"loyalty_tier": "c.loyalty_tier", "country": "c.country"}
    f |= {f"consent_{ch}": _consent(ch) for ch in CONSENT_CHANNELS}
    f |= {
        "consent_profiling": "coalesce(c.consent_profiling, true)",
        "rfm_recency_score": "coalesce(rfm.r, 0)",
        "rfm_frequency_score": "coalesce(rfm.f, 0)",
        "rfm_monetary_score": "coalesce(rfm.m, 0)",
        "rfm_segment": _segment_case(),
    }
    return _snapshot("customer_profile", cut, ctes, joins, f)


#: One builder per view, in the order of catalog.VIEWS.
BUILDERS = {
    "customer_purchases": purchases_sql,
    "customer_engagement": engagement_sql,
    "customer_service": service_sql,
    "customer_offers": offers_sql,
    "customer_profile": profile_sql,
}
