"""Next best offer: the offer, if any, that adds the most expected profit, under the rules.

For a customer and a channel, each valid, eligible offer of that channel is valued as

    expected incremental profit = uplift * margin - P(redeem) * offer cost - contact cost

with the uplift and P(buy | offer) from the champion offer model (P(redeem) is the chance
the customer buys with the offer), the margin = average order value * margin rate, and the
offer cost = its cost beyond the discount plus the discount itself. "No offer" is always a
candidate worth 0: a customer who would buy anyway gets no discount. Consent (profiling and
channel), validity, eligibility, a weekly contact cap per channel, a cooldown per offer and
an optional budget are applied before ranking. A small exploration share picks uniformly
among the allowed actions, and every decision records the probability with which its action
was chosen, so new policies can be evaluated off-policy on the decision log.
"""

from __future__ import annotations

import json
import math
import os
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kizuna.features.contracts import NO_OFFER
from kizuna.settings import Settings

POINT_VALUE = 0.01  # money per loyalty point


@dataclass(frozen=True)
class Offer:
    """One catalogue offer, as the lake's ``offers`` table has it."""

    offer_id: str
    kind: str
    value: float
    cost: float
    channel: str
    valid_from: datetime
    valid_to: datetime | None
    eligibility: dict[str, Any]

    def discount(self, order_value: float) -> float:
        """What the offer gives away on an order of ``order_value``."""
        if self.kind == "percent_discount":
            return order_value * self.value / 100
        if self.kind == "amount_discount":
            return min(self.value, order_value)
        if self.kind == "loyalty_points":
            return self.value * POINT_VALUE
        return 0.0

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_to is None or at <= self.valid_to)


def load_catalog(settings: Settings) -> dict[str, Offer]:
    """The offers of the lake."""
    from kizuna.features.lake import Lake

    frame = Lake(settings).read("offers")
    catalog = {}
    for row in frame.to_dict("records"):
        valid_to = row.get("valid_to")
        rules = row.get("eligibility")
        catalog[row["offer_id"]] = Offer(
            offer_id=row["offer_id"],
            kind=row["kind"],
            value=float(row["value"]),
            cost=float(row["cost"]),
            channel=row["channel"],
            valid_from=pd.Timestamp(row["valid_from"]).to_pydatetime(),
            valid_to=None if pd.isna(valid_to) else pd.Timestamp(valid_to).to_pydatetime(),
            eligibility=json.loads(rules) if isinstance(rules, str) and rules else {},
        )
    return catalog


def eligible(offer: Offer, profile: dict[str, Any]) -> str | None:
    """Why ``profile`` may not get ``offer``, or None when it may."""
    rules, orders = offer.eligibility, profile.get("order_count_lifetime") or 0
    if "min_orders" in rules and orders < rules["min_orders"]:
        return f"needs at least {rules['min_orders']} orders"
    if "max_orders" in rules and orders > rules["max_orders"]:
        return f"only for customers with at most {rules['max_orders']} orders"
    if rules.get("new_customers_only") and orders > 0:
        return "only for new customers"
    for key, column in (
        ("loyalty_tiers", "loyalty_tier"),
        ("countries", "country"),
        ("segments", "rfm_segment"),
    ):
        if key in rules and profile.get(column) not in rules[key]:
            return f"only for {column} in {', '.join(map(str, rules[key]))}"
    return None


@dataclass
class Policy:
    """The business's numbers and rules for offers (KIZUNA_* settings)."""

    margin_rate: float
    contact_cost: dict[str, float]
    exploration: float
    contacts_per_week: int
    cooldown_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            margin_rate=settings.offer_margin_rate,
            contact_cost={
                "email": settings.contact_cost_email,
                "sms": settings.contact_cost_sms,
                "push": settings.contact_cost_push,
            },
            exploration=settings.offer_exploration,
            contacts_per_week=settings.contacts_per_week,
            cooldown_days=settings.offer_cooldown_days,
        )


def offer_economics(
    offer: Offer,
    uplift: np.ndarray,
    p_redeem: np.ndarray,
    order_value: np.ndarray,
    policy: Policy,
    channel: str,
) -> tuple[np.ndarray, np.ndarray]:
    """The expected offer cost, P(redeem) x (offer cost + discount), and the expected
    incremental profit, uplift x margin - that cost - contact cost, of ``offer`` for each
    customer: the one valuation :func:`candidates`, :func:`best_offers` and the campaign
    planner share."""
    discount = np.fromiter(map(offer.discount, order_value), float, len(order_value))
    cost = p_redeem * (offer.cost + discount)
    profit = (
        uplift * order_value * policy.margin_rate - cost - policy.contact_cost.get(channel, 0.0)
    )
    return cost, profit


@dataclass
class DecisionLog:
    """Every decision and outcome, appended as JSON lines and synced to disk, plus the
    contact history the caps and cooldowns read."""

    folder: Path
    _contacts: dict[str, list[tuple[datetime, str, str]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    _by_customer: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _outcomes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for record in self._read("decisions.jsonl"):
            self._remember(record)
        for record in self._read("outcomes.jsonl"):
            self._outcomes[record["decision_id"]].append(record)

    def _read(self, name: str):
        path = self.folder / name
        if not path.exists():
            return
        with path.open() as lines:
            for line in lines:
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash mid-write

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with self._lock, (self.folder / name).open("a") as out:
            out.write(json.dumps(record, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def _remember(self, record: dict[str, Any]) -> None:
        self._decisions[record["decision_id"]] = record
        self._by_customer[record["customer_id"]].append(record["decision_id"])
        if record["action"] != NO_OFFER:
            at = datetime.fromisoformat(record["decided_at"])
            self._contacts[record["customer_id"]].append((at, record["channel"], record["action"]))

    def record(self, decision: dict[str, Any]) -> None:
        self._append("decisions.jsonl", decision)
        self._remember(decision)

    def record_many(self, decisions: list[dict[str, Any]]) -> None:
        """Append ``decisions`` in one write and one fsync (a campaign's 100,000 rows
        recorded one by one would be 100,000 fsyncs)."""
        text = "".join(json.dumps(d, default=str) + "\n" for d in decisions)
        with self._lock, (self.folder / "decisions.jsonl").open("a") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        for decision in decisions:
            self._remember(decision)

    def outcome(self, decision_id: str, outcome: dict[str, Any]) -> dict[str, Any] | None:
        """Append an outcome of a known decision; None when the decision is unknown."""
        if decision_id not in self._decisions:
            return None
        record = {"decision_id": decision_id, **outcome}
        self._append("outcomes.jsonl", record)
        self._outcomes[decision_id].append(record)
        return record

    def history(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's decisions, each with its reported ``outcomes``."""
        return [
            {**self._decisions[d], "outcomes": list(self._outcomes.get(d, ()))}
            for d in self._by_customer.get(customer_id, ())
        ]

    def contacts(self, customer_id: str) -> list[tuple[datetime, str, str]]:
        return self._contacts.get(customer_id, [])

    def forget(self, customer_ids: set[str]) -> tuple[int, int]:
        """Erase the customers' decisions and their outcomes from the log files and from
        memory (privacy erasure); returns (decisions, outcomes) removed."""
        with self._lock:
            gone = {d for c in customer_ids for d in self._by_customer.get(c, ())}
            counts = (
                self._rewrite(
                    "decisions.jsonl", lambda r: r.get("customer_id") not in customer_ids
                ),
                self._rewrite("outcomes.jsonl", lambda r: r.get("decision_id") not in gone),
            )
            for customer_id in customer_ids:
                self._by_customer.pop(customer_id, None)
                self._contacts.pop(customer_id, None)
            for decision_id in gone:
                self._decisions.pop(decision_id, None)
                self._outcomes.pop(decision_id, None)
        return counts

    def _rewrite(self, name: str, keep) -> int:
        path = self.folder / name
        if not path.exists():
            return 0
        kept, removed = [], 0
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash mid-write
            if keep(record):
                kept.append(line)
            else:
                removed += 1
        if removed:
            tmp = path.with_name(f".{name}.tmp")
            with tmp.open("w") as out:
                out.write("".join(line + "\n" for line in kept))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        return removed


@dataclass(frozen=True)
class Candidate:
    offer_id: str
    uplift: float
    p_redeem: float
    expected_incremental_profit: float
    allowed: bool
    reason: str


def _num(value: Any, default: float = 0.0) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


def candidates(
    offers: list[Offer],
    outputs: dict[str, float],
    profile: dict[str, Any],
    policy: Policy,
    channel: str,
    contacts: list[tuple[datetime, str, str]],
    at: datetime,
    budget: float | None,
) -> list[Candidate]:
    """Every offer of ``channel`` valued and checked against the rules, best first."""
    order_value = _num(profile.get("avg_order_value"), _num(outputs.get("mean_order_value")))
    margin = order_value * policy.margin_rate
    cooldown = timedelta(days=policy.cooldown_days)
    out = []
    for offer in offers:
        uplift = _num(outputs.get(f"uplift_{offer.offer_id}"))
        p_redeem = _num(outputs.get(f"p_buy_{offer.offer_id}"))
        costs, profits = offer_economics(
            offer,
            np.array([uplift]),
            np.array([p_redeem]),
            np.array([order_value]),
            policy,
            channel,
        )
        cost, profit = float(costs[0]), float(profits[0])
        why_not = None
        if not offer.valid_at(at):
            why_not = "not valid now"
        elif (rule := eligible(offer, profile)) is not None:
            why_not = f"not eligible: {rule}"
        elif any(o == offer.offer_id and timedelta(0) <= at - t < cooldown for t, _, o in contacts):
            why_not = f"cooldown: sent within {policy.cooldown_days} days"
        elif budget is not None and cost > budget:
            why_not = f"over budget: expected cost {cost:.2f} > {budget:.2f}"
        reason = why_not or (
            f"uplift {uplift:+.3f} * margin {margin:.2f} - expected cost {cost:.2f} - contact "
            f"{policy.contact_cost.get(channel, 0.0):.2f}"
        )
        out.append(Candidate(offer.offer_id, uplift, p_redeem, profit, why_not is None, reason))
    return sorted(out, key=lambda c: (not c.allowed, -c.expected_incremental_profit))


def decide(
    *,
    customer_id: str,
    channel: str,
    record: dict[str, Any],
    outputs: dict[str, float] | None,
    profile: dict[str, Any],
    catalog: dict[str, Offer],
    policy: Policy,
    log: DecisionLog,
    at: datetime,
    budget: float | None,
    rng: np.random.Generator,
    model_versions: dict[str, str],
) -> dict[str, Any]:
    """One logged decision: the chosen action, its probability and the ranked offers."""
    decision: dict[str, Any] = {
        "decision_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "channel": channel,
        "decided_at": at.astimezone(UTC).isoformat(),
        "cold_start": bool(record.get("cold_start")),
        "model_versions": model_versions,
    }
    ranked: list[Candidate] = []
    blocked = None
    if not record.get("scored", True):
        blocked = "the customer opted out of profiling: no scoring, no targeted offer"
    elif profile.get(f"consent_{channel}") is False:
        blocked = f"no consent for {channel}"
    else:
        week = [t for t, ch, _ in log.contacts(customer_id) if ch == channel]
        recent = [t for t in week if timedelta(0) <= at - t < timedelta(days=7)]
        if len(recent) >= policy.contacts_per_week:
            blocked = f"contact cap: {len(recent)} offers on {channel} in the last 7 days"
        else:
            offers = [o for o in catalog.values() if o.channel == channel]
            ranked = candidates(
                offers,
                outputs or {},
                profile,
                policy,
                channel,
                log.contacts(customer_id),
                at,
                budget,
            )
    allowed = [c for c in ranked if c.allowed]
    best = allowed[0] if allowed and allowed[0].expected_incremental_profit > 0 else None
    greedy = best.offer_id if best else NO_OFFER
    actions = [NO_OFFER, *(c.offer_id for c in allowed)]
    explore = policy.exploration if len(actions) > 1 else 0.0
    explored = bool(rng.random() < explore)
    action = actions[rng.integers(len(actions))] if explored else greedy
    propensity = explore / len(actions) + (1 - explore) * (action == greedy)
    if blocked:
        reason = blocked
    elif explored:
        reason = f"exploration: chosen at random among {len(actions)} allowed actions"
    elif best:
        reason = f"{best.offer_id} adds the most expected profit: {best.reason}"
    elif allowed:
        top = allowed[0]
        reason = (
            f"no offer adds value: the best, {top.offer_id}, would add "
            f"{top.expected_incremental_profit:.2f}"
        )
    else:
        reason = "no offer of this channel is allowed now"
    chosen = next((c for c in ranked if c.offer_id == action), None)
    decision.update(
        {
            "action": action,
            "offer": None
            if chosen is None
            else {
                "offer_id": chosen.offer_id,
                "uplift": chosen.uplift,
                "p_redeem": chosen.p_redeem,
                "expected_incremental_profit": chosen.expected_incremental_profit,
            },
            "propensity": propensity,
            "explored": explored,
            "reason": reason,
            "candidates": [c.__dict__ for c in ranked],
        }
    )
    log.record(decision)
    return decision


def best_offers(
    table: pd.DataFrame, catalog: dict[str, Offer], policy: Policy, at: datetime
) -> pd.DataFrame:
    """Each customer's best offer over every consented channel, for the nightly file.

    The same valuation as :func:`decide`, vectorized over a score table
    (kizuna.serving.scoring.score_frame): validity, eligibility and consent apply;
    contact caps, cooldowns and budgets, which depend on the moment of contact, do not.
    Columns ``best_offer_id`` (None when no offer adds value), ``best_offer_channel`` and
    ``best_offer_expected_profit``.
    """
    n = len(table)
    best_profit = np.zeros(n)
    best_offer = np.full(n, None, dtype=object)
    best_channel = np.full(n, None, dtype=object)
    order_value = table["profile_avg_order_value"].astype(float)
    order_value = order_value.fillna(order_value.mean()).to_numpy()
    profiling = table["consent_profiling"].astype("boolean").fillna(True).to_numpy(dtype=bool)
    for offer in catalog.values():
        column = f"uplift_{offer.offer_id}"
        if column not in table or not offer.valid_at(at):
            continue
        uplift = table[column].to_numpy(dtype=float)
        p_redeem = table[f"p_buy_{offer.offer_id}"].to_numpy(dtype=float)
        _, profit = offer_economics(offer, uplift, p_redeem, order_value, policy, offer.channel)
        consent = table[f"consent_{offer.channel}"].astype("boolean").fillna(False)
        allowed = consent.to_numpy(dtype=bool) & profiling
        if offer.eligibility:
            profiles = table[[c for c in table.columns if c.startswith("profile_")]]
            profiles = profiles.rename(columns=lambda c: c.removeprefix("profile_"))
            allowed &= np.array([eligible(offer, p) is None for p in profiles.to_dict("records")])
        better = allowed & (profit > best_profit)
        best_profit = np.where(better, profit, best_profit)
        best_offer = np.where(better, offer.offer_id, best_offer)
        best_channel = np.where(better, offer.channel, best_channel)
    return pd.DataFrame(
        {
            "best_offer_id": best_offer,
            "best_offer_channel": best_channel,
            "best_offer_expected_profit": np.where(best_offer == None, np.nan, best_profit),  # noqa: E711
        },
        index=table.index,
    )
