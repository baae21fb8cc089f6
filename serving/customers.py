"""One customer as a marketer sees them: profile, consent, tier, a timeline of what
happened, the scores with reasons, the repurchase curve and the next best offer.

The timeline reads the lake. Scanning every event file for one customer costs a second at
100,000 customers, so :class:`CustomerHistory` loads each customer's history once per lake
version into an in-memory DuckDB table indexed by customer (engagement folded into one
line per day), and a page reads its customer's rows from there; an ingest or a pushed
event changes the lake's version and the next read reloads. No page waits for a load
another request or the start-up warm-up is running: it reads the previous version's rows,
or, before the first load is done, its one customer's rows straight from the lake.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from kizuna.features.contracts import CONSENT_CHANNELS, NO_OFFER
from kizuna.features.lake import Lake
from kizuna.serving.decisions import (
    Candidate,
    DecisionLog,
    Offer,
    Policy,
    candidates,
)
from kizuna.serving.scoring import ScoreBook
from kizuna.settings import Settings

log = logging.getLogger(__name__)

# Engagement event type -> its words in a day's line ("3 visits, 1 e-mail opened").
_ENGAGEMENT = {
    "session": ("visit", "visits"),
    "page_view": ("page viewed", "pages viewed"),
    "email_open": ("e-mail opened", "e-mails opened"),
    "email_click": ("e-mail click", "e-mail clicks"),
    "push_open": ("push opened", "pushes opened"),
}
CHANNEL_WORDS = {"email": "e-mail", "sms": "SMS", "push": "push"}
TIMELINE_LIMIT = 200


def _timeline_sql(lake: Lake, only: str | None = None) -> str:
    """Every timeline entry of the lake (of the customers in table ``only``, if given)."""
    engagement = ", ".join(f"'{t}'" for t in _ENGAGEMENT)
    mine = f"customer_id IN (SELECT customer_id FROM {only})" if only else "true"
    return f"""
    WITH orders AS (SELECT * FROM {lake.relation_sql("orders")} WHERE {mine}),
    lines AS (
        SELECT order_id, string_agg(DISTINCT category, ', ' ORDER BY category) AS categories
        FROM {lake.relation_sql("order_lines")}
        WHERE order_id IN (SELECT order_id FROM orders) GROUP BY order_id
    ),
    events AS (SELECT * FROM {lake.relation_sql("events")} WHERE {mine})
    SELECT o.customer_id, o.ordered_at AS happened_at,
           CASE WHEN o.is_return THEN 'return' ELSE 'order' END AS kind,
           o.amount, o.channel, l.categories AS detail, o.offer_id, NULL::DOUBLE AS value
    FROM orders o LEFT JOIN lines l USING (order_id)
    UNION ALL
    SELECT customer_id, occurred_at, type, NULL, channel, NULL, NULL, value
    FROM events WHERE type NOT IN ({engagement})
    UNION ALL
    SELECT customer_id, max(last_at), 'engagement', NULL, NULL,
           string_agg(type || '=' || n, ',' ORDER BY type), NULL, NULL
    FROM (
        SELECT customer_id, date_trunc('day', occurred_at) AS day, type, count(*) AS n,
               max(occurred_at) AS last_at
        FROM events WHERE type IN ({engagement}) GROUP BY ALL
    ) GROUP BY customer_id, day
    UNION ALL
    SELECT customer_id, sent_at, CASE WHEN offer_id IS NULL THEN 'control' ELSE 'offer' END,
           NULL, channel, NULL, offer_id, propensity
    FROM {lake.relation_sql("exposures")} WHERE {mine}
    """


def _read(paths: list[str]) -> str:
    listed = ", ".join(f"'{p}'" for p in paths)
    return f"read_parquet([{listed}], union_by_name = true)"


class CustomerHistory:
    """Every customer's profile and timeline, kept in an in-memory DuckDB in step with the
    lake (thread-safe).

    The first read loads everything; after an ingest or a pushed event only the customers
    in the lake's new files are reloaded (their rows dropped and read again from every
    file, so a day's engagement stays one line). A lake that lost files (a rewrite) is
    loaded again whole.

    Args:
        settings: whose lake.
    """

    KINDS = ("customers", "orders", "order_lines", "events", "exposures")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._files: dict[str, set[str]] = {}
        self._version: int | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        # One customer's rows per (lake version, customer), read while the first load runs.
        self._single: dict[tuple[int, str], duckdb.DuckDBPyConnection] = {}
        self._single_lock = threading.Lock()
        self._loader: threading.Thread | None = None
        self.seconds = 0.0

    def _load_all(self, lake: Lake) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE TABLE profile AS SELECT * FROM {lake.relation_sql('customers')}")
        con.execute(
            "CREATE TABLE timeline AS SELECT * FROM (" + _timeline_sql(lake) + ") "
            "ORDER BY customer_id, happened_at"
        )
        con.execute("CREATE INDEX timeline_customer ON timeline (customer_id)")
        return con

    def _reload(self, con: duckdb.DuckDBPyConnection, lake: Lake, new: dict[str, list]) -> int:
        """Reload the customers of the new files; returns how many."""
        parts = [
            f"SELECT customer_id FROM {_read(paths)}"
            for kind, paths in new.items()
            if paths and kind != "order_lines"
        ]
        if new.get("order_lines"):
            parts.append(
                f"SELECT customer_id FROM {lake.relation_sql('orders')} WHERE order_id IN "
                f"(SELECT order_id FROM {_read(new['order_lines'])})"
            )
        if not parts:
            return 0
        con.execute(
            "CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT customer_id FROM ("
            + " UNION ALL ".join(parts)
            + ")"
        )
        con.execute("BEGIN")  # readers see a customer's old rows or new ones, never none
        con.execute("DELETE FROM timeline WHERE customer_id IN (SELECT customer_id FROM touched)")
        con.execute(f"INSERT INTO timeline {_timeline_sql(lake, only='touched')}")
        if new.get("customers"):
            con.execute(
                "DELETE FROM profile WHERE customer_id IN (SELECT customer_id FROM touched)"
            )
            con.execute(
                f"INSERT INTO profile BY NAME SELECT * FROM {lake.relation_sql('customers')} "
                "WHERE customer_id IN (SELECT customer_id FROM touched)"
            )
        con.execute("COMMIT")
        return int(con.execute("SELECT count(*) FROM touched").fetchone()[0])

    def _connection(self) -> duckdb.DuckDBPyConnection:
        lake = Lake(self.settings)
        manifest = lake.manifest()
        with self._lock:
            if self._con is not None and manifest.version == self._version:
                return self._con
            started = time.perf_counter()
            files = {k: set(manifest.files.get(k, [])) for k in self.KINDS}
            new = {k: sorted(files[k] - self._files.get(k, set())) for k in self.KINDS}
            lost = any(self._files.get(k, set()) - files[k] for k in self.KINDS)
            if self._con is None or lost:
                self._con = self._load_all(lake)
                what = "every customer"
            else:
                paths = {k: [str(lake.root / f) for f in v] for k, v in new.items()}
                what = f"{self._reload(self._con, lake, paths):,} customers"
            self._files, self._version = files, manifest.version
            with self._single_lock:
                for single in self._single.values():
                    single.close()
                self._single.clear()
            self.seconds = time.perf_counter() - started
            log.info("loaded the timelines of %s in %.2f s", what, self.seconds)
            return self._con

    def warm(self) -> None:
        """Load now (the API calls it in the background at start-up)."""
        self._connection()

    def _tables(self, customer_id: str) -> duckdb.DuckDBPyConnection:
        """Where to read the customer's rows without waiting for a load: the loaded tables
        (the previous version's while another thread reloads them), or, until the first
        load is done (started in the background if nothing started it), this customer's
        rows read from the lake for this request."""
        if self._con is None:
            self._load_in_background()
            return self._one(customer_id)
        if self._lock.locked():
            return self._con.cursor()
        return self._connection().cursor()

    def _load_in_background(self) -> None:
        with self._single_lock:
            if self._loader is None:
                self._loader = threading.Thread(
                    target=self.warm, name="kizuna-timelines", daemon=True
                )
                self._loader.start()

    def _one(self, customer_id: str) -> duckdb.DuckDBPyConnection:
        lake = Lake(self.settings)
        key = (lake.manifest().version, customer_id)
        with self._single_lock:
            con = self._single.get(key)
            if con is None:
                con = duckdb.connect()
                con.execute("SET TimeZone = 'UTC'")
                con.execute("CREATE TEMP TABLE one AS SELECT ?::VARCHAR AS customer_id", [key[1]])
                con.execute(
                    f"CREATE TABLE profile AS SELECT * FROM {lake.relation_sql('customers')} "
                    "WHERE customer_id = ?",
                    [customer_id],
                )
                con.execute("CREATE TABLE timeline AS " + _timeline_sql(lake, only="one"))
                self._single[key] = con
                while len(self._single) > 8:
                    self._single.pop(next(iter(self._single))).close()
            return con.cursor()

    def profile(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's row of the lake (signup, country, tier, consent), or None."""
        cursor = self._tables(customer_id)
        frame = cursor.execute(
            "SELECT * FROM profile WHERE customer_id = ? LIMIT 1", [customer_id]
        ).df()
        if frame.empty:
            return None
        row = frame.iloc[0].to_dict()
        return {k: v for k, v in row.items() if not k.startswith("_") and k != "month"}

    def timeline(self, customer_id: str, limit: int = TIMELINE_LIMIT) -> pd.DataFrame:
        """The customer's latest ``limit`` lake entries, newest first."""
        cursor = self._tables(customer_id)
        return cursor.execute(
            "SELECT * FROM timeline WHERE customer_id = ? ORDER BY happened_at DESC LIMIT ?",
            [customer_id, limit],
        ).df()


def _engagement_words(detail: str) -> str:
    parts = []
    for item in detail.split(","):
        kind, _, n = item.partition("=")
        one, many = _ENGAGEMENT.get(kind, (kind, kind))
        count = int(n or 0)
        parts.append(f"{count} {one if count == 1 else many}")
    return ", ".join(parts)


def describe(row: dict[str, Any]) -> str:
    """One timeline entry in words."""
    kind, channel = row["kind"], row.get("channel")
    on = f" by {CHANNEL_WORDS.get(channel, channel)}" if isinstance(channel, str) else ""
    value = row.get("value")
    if kind in ("order", "return"):
        what = "Order" if kind == "order" else "Return"
        text = f"{what} of {row['amount']:,.2f}"
        if isinstance(channel, str):
            text += f" ({channel})"
        if isinstance(row.get("detail"), str):
            text += f": {row['detail']}"
        if isinstance(row.get("offer_id"), str):
            text += f", with offer {row['offer_id']}"
        return text
    if kind == "engagement":
        return _engagement_words(row["detail"]).capitalize()
    if kind == "offer":
        return f"Offer {row['offer_id']} sent{on}"
    if kind == "control":
        return f"Held out as control{on} (no offer)"
    if kind == "nps_response":
        group = "promoter" if value >= 9 else "detractor" if value <= 6 else "passive"
        return f"NPS answer {value:.0f}/10 ({group})"
    if kind == "csat_response":
        return f"CSAT answer {value:.0f}/5"
    if kind == "review":
        return f"Review {value:.0f}/5"
    if kind == "unsubscribe":
        return f"Unsubscribed{on}" if on else "Unsubscribed"
    if kind == "support_ticket":
        return "Support ticket"
    if kind == "complaint":
        return "Complaint"
    return kind.replace("_", " ").capitalize()


@dataclass
class OfferView:
    """The next best offer on one channel, its candidates and the reason in words."""

    channel: str
    action: str
    reason: str
    candidates: list[Candidate]


def offer_in_words(candidate: Candidate, margin: float, contact_cost: float) -> str:
    """Why an offer is worth what it is, in a marketer's words."""
    points = 100 * candidate.uplift
    direction = "raises" if points >= 0 else "lowers"
    cost = candidate.uplift * margin - contact_cost - candidate.expected_incremental_profit
    return (
        f"{candidate.offer_id} {direction} the chance of an order by {abs(points):.1f} "
        f"points, worth {candidate.uplift * margin:.2f} in margin, against {cost:.2f} "
        f"expected discount and cost and {contact_cost:.2f} to send: "
        f"{candidate.expected_incremental_profit:+.2f} expected profit"
    )


def next_best_offers(
    book: ScoreBook,
    customer_id: str,
    catalog: dict[str, Offer],
    policy: Policy,
    decisions: DecisionLog,
    at: datetime,
) -> list[OfferView]:
    """What the decision layer would choose on each channel now, without logging it
    (a preview: a real decision goes through POST /v1/decisions)."""
    outputs, profile = book.offer_inputs(customer_id)
    record = book.score(customer_id)
    views = []
    for channel in CONSENT_CHANNELS:
        offers = [o for o in catalog.values() if o.channel == channel]
        if not offers:
            continue
        if not record.get("scored", True):
            views.append(OfferView(channel, NO_OFFER, "opted out of profiling", []))
            continue
        if profile.get(f"consent_{channel}") is False:
            views.append(OfferView(channel, NO_OFFER, f"no consent for {channel}", []))
            continue
        ranked = candidates(
            offers, outputs, profile, policy, channel, decisions.contacts(customer_id), at, None
        )
        order_value = profile.get("avg_order_value") or outputs.get("mean_order_value") or 0.0
        margin = float(order_value) * policy.margin_rate
        contact = policy.contact_cost.get(channel, 0.0)
        best = next((c for c in ranked if c.allowed), None)
        if best is not None and best.expected_incremental_profit > 0:
            reason = offer_in_words(best, margin, contact)
            views.append(OfferView(channel, best.offer_id, reason, ranked))
        elif best is not None:
            reason = (
                f"no offer adds profit: the best, {best.offer_id}, would add "
                f"{best.expected_incremental_profit:+.2f}; a customer who would buy anyway "
                "gets no discount"
            )
            views.append(OfferView(channel, NO_OFFER, reason, ranked))
        else:
            views.append(OfferView(channel, NO_OFFER, "no offer is allowed now", ranked))
    return views


def kizuna_decisions(decisions: DecisionLog, customer_id: str) -> list[dict[str, Any]]:
    """The decisions Kizuna logged for the customer, newest first, with their outcomes."""
    return sorted(
        decisions.history(customer_id), key=lambda d: d.get("decided_at", ""), reverse=True
    )
