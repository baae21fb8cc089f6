"""Campaign planning: which customers of an audience get which offer, within a budget.

A marketer picks an audience (rows of the score book's table), a channel, the offers and a
budget. Each customer gets at most one offer, chosen to maximise the campaign's total
expected incremental profit (the valuation of :mod:`kizuna.serving.decisions`: uplift x
margin - P(redeem) x (offer cost + discount) - contact cost) such that

- the campaign's **expected spend** stays within the budget: the budget is in expected
  money, not face value; a row's expected cost is P(redeem) x (offer cost + discount) +
  contact cost, so an offer nobody redeems still costs its contact;
- the rules of :func:`~kizuna.serving.decisions.decide` hold: profiling and channel
  consent (unknown channel consent counts as none, as in the nightly file), validity,
  eligibility, the weekly contact cap per channel and the per-offer cooldown, both read
  from the decision log's contact history;
- only offers with positive expected profit are sent ("no offer" is worth 0).

That is a multiple-choice knapsack (serving/knapsack.py): its LP relaxation solved exactly
by the greedy over each customer's upper convex hull of (cost, profit) options (Sinha and
Zoltners, 1979), keeps the integral part, and fills the leftover budget with the best
remaining upgrades; the result is never over budget and falls short of the optimum by less
than one option's profit. Two simple strategies are planned beside it on the same budget
("the best single offer to everyone, highest churn risk first" and "everyone at high
risk"), and the plan is never worse than either.

A random holdout share of the assigned customers (seeded) gets no offer so the campaign can
be measured; every row carries the probability of its logged action under that
randomisation, so the decision log can be evaluated off-policy like :func:`decide`'s.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from kizuna.features.contracts import CONSENT_CHANNELS, NO_OFFER
from kizuna.serving.decisions import (
    DecisionLog,
    Offer,
    Policy,
    eligible,
    offer_economics,
)
from kizuna.serving.knapsack import assign_offers
from kizuna.settings import Settings

log = logging.getLogger(__name__)

# Why an audience customer can get none of the campaign's offers, in the order checked.
BLOCKS = ("consent", "cap", "eligibility", "cooldown", "no_positive_offer")
CSV_COLUMNS = [
    "campaign_id",
    "decision_id",
    "customer_id",
    "channel",
    "action",
    "offer_id",
    "holdout",
    "propensity",
    "expected_uplift",
    "expected_cost",
    "expected_profit",
]


class CampaignError(ValueError):
    """A campaign cannot be planned as asked; the message says what to change.

    Args:
        message: what is wrong and what to do.
        field: the request field at fault (``offer_ids``, ``channel``, ...).
    """

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownCustomersError(CampaignError):
    """Customer ids of the audience that the score book does not hold."""


@dataclass(frozen=True)
class Totals:
    """What one way of spending the budget is expected to bring (sums over its rows)."""

    strategy: str  # "plan", "best_single_offer" or "high_risk"
    offer_id: str | None  # the single offer of a single-offer strategy
    customers: int
    expected_incremental_purchases: float  # sum of uplifts
    expected_cost: float
    expected_profit: float


@dataclass(frozen=True)
class PlanCounts:
    """Customers of the audience by what the plan did with them.

    ``eligible`` customers have at least one allowed offer with positive expected profit;
    ``blocked`` counts the others by the first rule that stopped them (:data:`BLOCKS`);
    ``left_out_by_budget`` are eligible but not assigned; ``assigned`` = ``held_out`` +
    ``treated``."""

    audience: int
    eligible: int
    assigned: int
    held_out: int
    treated: int
    left_out_by_budget: int
    blocked: dict[str, int]


@dataclass(frozen=True, eq=False)
class CampaignPlan:
    """A planned campaign.

    ``spent``, ``expected_incremental_purchases`` and ``expected_profit`` are of the
    treated customers (the holdout gets nothing and costs nothing). ``comparisons`` puts
    the plan with every assigned customer treated (``strategy="plan"``) beside the two
    simple strategies on the same budget. ``rows`` has one row per audience customer:
    :data:`CSV_COLUMNS` plus ``p_redeem`` and ``reason``; ``offer_id`` is the assigned
    offer (also for a held-out customer, whose ``action`` is ``no_offer``) and the
    ``expected_*`` columns are that offer's for the customer (0 without one)."""

    campaign_id: str
    created_at: datetime
    channel: str
    budget: float
    holdout_share: float
    seed: int
    offer_ids: tuple[str, ...]
    spent: float
    expected_incremental_purchases: float
    expected_profit: float
    counts: PlanCounts
    comparisons: tuple[Totals, ...]
    rows: pd.DataFrame


@dataclass(frozen=True)
class _Options:
    """Every (customer, offer) pair of a campaign: values, rules and why a row is blocked."""

    offers: list[Offer]
    uplift: np.ndarray  # (customers, offers)
    p_redeem: np.ndarray
    cost: np.ndarray  # expected cost, contact included
    profit: np.ndarray
    allowed: np.ndarray  # every rule but "adds value"
    block: np.ndarray  # one of BLOCKS, or "" for an eligible customer
    reason: np.ndarray  # why, for the blocked


def campaign_offers(
    catalog: dict[str, Offer],
    channel: str,
    offer_ids: list[str] | None,
    at: datetime,
    scored: set[str],
) -> list[Offer]:
    """The campaign's offers: ``offer_ids`` checked (known, of ``channel``, valid at ``at``,
    in ``scored``: offers the offer model scores), or every such offer of the channel."""
    if channel not in CONSENT_CHANNELS:
        raise CampaignError(
            f"unknown channel {channel!r}; choose from {', '.join(CONSENT_CHANNELS)}", "channel"
        )
    mine = sorted(o.offer_id for o in catalog.values() if o.channel == channel)
    if not offer_ids:
        offers = [catalog[o] for o in mine if catalog[o].valid_at(at) and o in scored]
        if not offers:
            raise CampaignError(
                f"no {channel} offer is valid on {at:%Y-%m-%d} and scored by the offer model "
                f"({', '.join(mine) or 'the catalog has none'}); add offers to the catalog or "
                "choose another channel",
                "channel",
            )
        return offers
    for offer_id in offer_ids:
        offer = catalog.get(offer_id)
        if offer is None:
            raise CampaignError(
                f"unknown offer id {offer_id!r}; the catalog has {', '.join(sorted(catalog))}",
                "offer_ids",
            )
        if offer.channel != channel:
            raise CampaignError(
                f"offer {offer_id!r} is a {offer.channel} offer, not {channel}; the {channel} "
                f"offers are {', '.join(mine) or 'none'}",
                "offer_ids",
            )
        if not offer.valid_at(at):
            until = "open-ended" if offer.valid_to is None else f"{offer.valid_to:%Y-%m-%d}"
            raise CampaignError(
                f"offer {offer_id!r} is not valid on {at:%Y-%m-%d} (valid from "
                f"{offer.valid_from:%Y-%m-%d}, until {until}); leave it out",
                "offer_ids",
            )
        if offer_id not in scored:
            raise CampaignError(
                f"the offer model does not score {offer_id!r}; run `kizuna train offers` once "
                "its exposures are ingested, or leave it out",
                "offer_ids",
            )
    return [catalog[o] for o in dict.fromkeys(offer_ids)]


def _flag(audience: pd.DataFrame, column: str, missing: bool) -> np.ndarray:
    if column not in audience:
        return np.full(len(audience), missing)
    return audience[column].astype("boolean").fillna(missing).to_numpy(dtype=bool)


def _values(
    audience: pd.DataFrame,
    offers: list[Offer],
    policy: Policy,
    channel: str,
    mean_order_value: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Uplift, P(redeem), expected cost (contact included) and expected profit per pair;
    a missing model output counts as 0, as in :func:`~kizuna.serving.decisions.candidates`."""
    order_value = audience["profile_avg_order_value"].astype(float).to_numpy()
    if mean_order_value is None:
        known = order_value[~np.isnan(order_value)]
        mean_order_value = float(known.mean()) if len(known) else 0.0
    order_value = np.where(np.isnan(order_value), mean_order_value, order_value)
    shape = (len(audience), len(offers))
    uplift, p_redeem, cost, profit = (np.zeros(shape) for _ in range(4))
    contact = policy.contact_cost.get(channel, 0.0)
    for j, offer in enumerate(offers):
        uplift[:, j] = np.nan_to_num(audience[f"uplift_{offer.offer_id}"].to_numpy(float))
        p_redeem[:, j] = np.nan_to_num(audience[f"p_buy_{offer.offer_id}"].to_numpy(float))
        offer_cost, profit[:, j] = offer_economics(
            offer, uplift[:, j], p_redeem[:, j], order_value, policy, channel
        )
        cost[:, j] = offer_cost + contact
    return uplift, p_redeem, cost, profit


def _eligibility(audience: pd.DataFrame, offers: list[Offer]) -> np.ndarray:
    """Whether each customer may get each offer, by :func:`eligible` evaluated once per
    distinct profile (the average order value, which no rule reads, left out of the key)."""
    fits = np.ones((len(audience), len(offers)), dtype=bool)
    ruled = [j for j, offer in enumerate(offers) if offer.eligibility]
    if not ruled or audience.empty:
        return fits
    columns = [c for c in audience if c.startswith("profile_") and c != "profile_avg_order_value"]
    profiles = audience[columns].rename(columns=lambda c: c.removeprefix("profile_"))
    if columns:
        keys = list(profiles.columns)
        group = profiles.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    else:
        group = np.zeros(len(audience), dtype=int)
    _, first = np.unique(group, return_index=True)
    records = [
        {k: None if pd.isna(v) else v for k, v in r.items()}  # as decide's profile has it
        for r in profiles.iloc[first].to_dict("records")
    ]
    for j in ruled:
        ok = np.array([eligible(offers[j], profile) is None for profile in records])
        fits[:, j] = ok[group]
    return fits


def _contact_rules(
    customer_ids: np.ndarray,
    offers: list[Offer],
    policy: Policy,
    channel: str,
    history: DecisionLog,
    at: datetime,
) -> tuple[np.ndarray, np.ndarray]:
    """Offers on ``channel`` in the 7 days before ``at`` per customer, and whether each
    offer was sent (on any channel) within the cooldown: :func:`decide`'s rules."""
    column = {offer.offer_id: j for j, offer in enumerate(offers)}
    recent = np.zeros(len(customer_ids), dtype=int)
    cooled = np.zeros((len(customer_ids), len(offers)), dtype=bool)
    week, cooldown = timedelta(days=7), timedelta(days=policy.cooldown_days)
    for i, customer_id in enumerate(customer_ids):
        for sent_at, sent_on, offer_id in history.contacts(customer_id):
            age = at - sent_at
            if sent_on == channel and timedelta(0) <= age < week:
                recent[i] += 1
            j = column.get(offer_id)
            if j is not None and timedelta(0) <= age < cooldown:
                cooled[i, j] = True
    return recent, cooled


def _options(
    audience: pd.DataFrame,
    offers: list[Offer],
    policy: Policy,
    channel: str,
    history: DecisionLog,
    at: datetime,
    mean_order_value: float | None,
) -> _Options:
    """Value every pair, apply the rules, and name the first rule that blocks each row."""
    uplift, p_redeem, cost, profit = _values(audience, offers, policy, channel, mean_order_value)
    profiling = _flag(audience, "consent_profiling", True)
    consent = _flag(audience, f"consent_{channel}", False)
    ids = audience["customer_id"].astype(str).to_numpy()
    recent, cooled = _contact_rules(ids, offers, policy, channel, history, at)
    capped = recent >= policy.contacts_per_week
    fits = _eligibility(audience, offers)
    allowed = (profiling & consent & ~capped)[:, None] & fits & ~cooled
    worth = allowed & (profit > 0)
    checks = [
        ~profiling,
        ~consent,
        capped,
        ~fits.any(axis=1),
        ~(fits & ~cooled).any(axis=1),
        ~worth.any(axis=1),
    ]
    names = ["consent", "consent", "cap", "eligibility", "cooldown", "no_positive_offer"]
    block = np.select(checks, names, default="").astype(object)
    reason = np.select(
        checks,
        [
            "the customer opted out of profiling: no scoring, no targeted offer",
            f"no consent for {channel}",
            "contact cap",
            "not eligible for any of the campaign's offers",
            f"cooldown: every eligible offer was sent within {policy.cooldown_days} days",
            "no offer adds value",
        ],
        default="",
    ).astype(object)
    for i in np.flatnonzero(capped & (block == "cap")):
        reason[i] = f"contact cap: {recent[i]} offers on {channel} in the last 7 days"
    best = np.where(allowed, profit, -np.inf).max(axis=1, initial=-np.inf)
    for i in np.flatnonzero(block == "no_positive_offer"):
        reason[i] = f"no offer adds value: the best would add {best[i]:.2f}"
    return _Options(offers, uplift, p_redeem, cost, profit, allowed, block, reason)


def _single_offer_runs(
    o: _Options, group: np.ndarray, by_risk: np.ndarray, budget: float
) -> list[tuple[int, np.ndarray]]:
    """For each offer: the customers of ``group`` it may go to, highest churn risk first,
    until the next one would overrun the budget."""
    runs = []
    for j in range(len(o.offers)):
        rows = by_risk[(o.allowed[:, j] & group)[by_risk]]
        runs.append((j, rows[np.cumsum(o.cost[rows, j]) <= budget]))
    return runs


def _totals(
    o: _Options, strategy: str, rows: np.ndarray, cols: np.ndarray, offer_id: str | None = None
) -> Totals:
    return Totals(
        strategy=strategy,
        offer_id=offer_id,
        customers=len(rows),
        expected_incremental_purchases=float(o.uplift[rows, cols].sum()),
        expected_cost=float(o.cost[rows, cols].sum()),
        expected_profit=float(o.profit[rows, cols].sum()),
    )


def _strategies(
    o: _Options, audience: pd.DataFrame, budget: float
) -> tuple[np.ndarray, tuple[Totals, ...]]:
    """The optimised choice and the totals of the plan and of the two simple strategies.

    A simple strategy's rows that add value are themselves a feasible plan, so the plan
    takes the best of the optimum's approximation and those: it never reports less."""
    n = len(audience)
    churn = audience.get("churn_probability", pd.Series(np.nan, index=audience.index))
    by_risk = np.argsort(-np.nan_to_num(churn.to_numpy(float), nan=-1.0), kind="stable")
    high = audience.get("risk_band", pd.Series(None, index=audience.index)).eq("high")
    choice = assign_offers(o.cost, o.profit, o.allowed, budget)
    best: dict[str, Totals] = {}
    for strategy, group in (
        ("best_single_offer", np.ones(n, dtype=bool)),
        ("high_risk", high.to_numpy(dtype=bool)),
    ):
        for j, rows in _single_offer_runs(o, group, by_risk, budget):
            offer_id = o.offers[j].offer_id if len(rows) else None
            run = _totals(o, strategy, rows, np.full(len(rows), j), offer_id)
            if strategy not in best or run.expected_profit > best[strategy].expected_profit:
                best[strategy] = run
            alternative = np.full(n, -1)
            alternative[rows[o.profit[rows, j] > 0]] = j
            if _profit(o, alternative) > _profit(o, choice):
                choice = alternative
    chosen = np.flatnonzero(choice >= 0)
    return choice, (_totals(o, "plan", chosen, choice[chosen]), *best.values())


def _profit(o: _Options, choice: np.ndarray) -> float:
    rows = np.flatnonzero(choice >= 0)
    return float(o.profit[rows, choice[rows]].sum())


def _rows(
    o: _Options,
    audience: pd.DataFrame,
    choice: np.ndarray,
    held: np.ndarray,
    campaign_id: str,
    channel: str,
    holdout_share: float,
) -> pd.DataFrame:
    """One row per audience customer: the action, its logged propensity, the values."""
    n = len(audience)
    assigned = choice >= 0
    pick = np.where(assigned, choice, 0)
    r = np.arange(n)

    def of(values: np.ndarray) -> np.ndarray:
        return np.where(assigned, values[r, pick], 0.0)

    offer_ids = np.array([o.offers[j].offer_id for j in pick], dtype=object)
    offer_id = np.where(assigned, offer_ids, None)
    treated = assigned & ~held
    cost, profit = of(o.cost), of(o.profit)
    reason = o.reason.copy()
    for i in np.flatnonzero(assigned):
        reason[i] = (
            f"held out for measurement: would have got {offer_id[i]}"
            if held[i]
            else f"{offer_id[i]} adds {profit[i]:.2f} expected profit for {cost[i]:.2f} "
            "expected spend"
        )
    reason[(o.block == "") & ~assigned] = (
        "left out by the budget: it went to customers with more profit per unit of spend"
    )
    return pd.DataFrame(
        {
            "campaign_id": campaign_id,
            "decision_id": [str(uuid.uuid4()) for _ in range(n)],
            "customer_id": audience["customer_id"].astype(str).to_numpy(),
            "channel": channel,
            "action": np.where(treated, offer_id, NO_OFFER),
            "offer_id": offer_id,
            "holdout": held,
            "propensity": np.select(
                [treated, held], [1 - holdout_share, holdout_share], default=1.0
            ),
            "expected_uplift": of(o.uplift),
            "expected_cost": cost,
            "expected_profit": profit,
            "p_redeem": of(o.p_redeem),
            "reason": reason,
        }
    )


def plan_campaign(
    audience: pd.DataFrame,
    catalog: dict[str, Offer],
    policy: Policy,
    history: DecisionLog,
    *,
    channel: str,
    budget: float,
    offer_ids: list[str] | None = None,
    holdout_share: float = 0.1,
    seed: int | None = None,
    at: datetime | None = None,
    mean_order_value: float | None = None,
) -> CampaignPlan:
    """Plan a campaign over ``audience`` (rows of the score book's table).

    Args:
        audience: score-table rows: ``customer_id``, consents, ``profile_*``,
            ``uplift_<offer>`` and ``p_buy_<offer>``, and ``churn_probability`` and
            ``risk_band`` for the comparisons (without them, audience order and no
            high-risk customers).
        catalog: every offer (:func:`~kizuna.serving.decisions.load_catalog`).
        policy: margin, contact costs, cap and cooldown.
        history: the decision log whose contacts the cap and cooldown read (not written).
        channel: email, sms or push.
        budget: the most expected spend (see the module docstring); 0 assigns only offers
            that cost nothing in expectation.
        offer_ids: the offers to choose from; default every valid, scored offer of the
            channel.
        holdout_share: the share of assigned customers held out (0 to 0.5).
        seed: the holdout's seed; default a random one (recorded in the plan).
        at: the moment of the campaign (validity, cap, cooldown); default now.
        mean_order_value: the order value of customers without one (the book's mean, as
            :func:`decide` uses); default the audience's mean.

    Raises:
        CampaignError: an unknown, off-channel, expired or unscored offer; a bad budget or
            holdout share.
    """
    at = (at or datetime.now(UTC)).astimezone(UTC)
    if not budget >= 0:
        raise CampaignError(f"budget must be 0 or more, not {budget}", "budget")
    if not 0 <= holdout_share <= 0.5:
        raise CampaignError(
            f"holdout_share must be within 0 and 0.5, not {holdout_share}", "holdout_share"
        )
    seed = secrets.randbelow(2**31) if seed is None else seed
    scored = {c.removeprefix("uplift_") for c in audience.columns if c.startswith("uplift_")}
    offers = campaign_offers(catalog, channel, offer_ids, at, scored)
    o = _options(audience, offers, policy, channel, history, at, mean_order_value)
    choice, comparisons = _strategies(o, audience, budget)
    assigned = np.flatnonzero(choice >= 0)
    held = np.zeros(len(audience), dtype=bool)
    held[assigned] = np.random.default_rng(seed).random(len(assigned)) < holdout_share
    campaign_id = str(uuid.uuid4())
    rows = _rows(o, audience, choice, held, campaign_id, channel, holdout_share)
    treated = rows[rows["action"] != NO_OFFER]
    eligible_count = int((o.block == "").sum())
    plan = CampaignPlan(
        campaign_id=campaign_id,
        created_at=at,
        channel=channel,
        budget=float(budget),
        holdout_share=holdout_share,
        seed=seed,
        offer_ids=tuple(offer.offer_id for offer in offers),
        spent=float(treated["expected_cost"].sum()),
        expected_incremental_purchases=float(treated["expected_uplift"].sum()),
        expected_profit=float(treated["expected_profit"].sum()),
        counts=PlanCounts(
            audience=len(audience),
            eligible=eligible_count,
            assigned=len(assigned),
            held_out=int(held.sum()),
            treated=len(treated),
            left_out_by_budget=eligible_count - len(assigned),
            blocked={b: int((o.block == b).sum()) for b in BLOCKS},
        ),
        comparisons=comparisons,
        rows=rows,
    )
    log.info(
        "planned campaign %s on %s: %d of %d customers assigned (%d held out), expected "
        "spend %.2f of %.2f, expected profit %.2f",
        campaign_id,
        channel,
        plan.counts.assigned,
        plan.counts.audience,
        plan.counts.held_out,
        plan.spent,
        budget,
        plan.expected_profit,
    )
    return plan


def rows_of(table: pd.DataFrame, customer_ids: list[str]) -> pd.DataFrame:
    """The rows of ``customer_ids`` (each once, in the order given) of a score table.

    Raises:
        UnknownCustomersError: ids the table does not hold.
    """
    wanted = list(dict.fromkeys(customer_ids))
    position = pd.Index(table["customer_id"].astype(str)).get_indexer(wanted)
    unknown = [c for c, p in zip(wanted, position, strict=True) if p < 0]
    if unknown:
        shown = ", ".join(map(repr, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        raise UnknownCustomersError(
            f"{len(unknown)} customer id(s) have no scores: {shown}; ingest them and rebuild "
            "the features, or leave them out",
            "audience.customer_ids",
        )
    return table.iloc[position]


def to_csv(plan: CampaignPlan) -> str:
    """The plan as CSV, one row per audience customer (:data:`CSV_COLUMNS`)."""
    return plan.rows[CSV_COLUMNS].to_csv(index=False, float_format="%.6g")


def campaigns_dir(settings: Settings) -> Path:
    """Where committed campaigns' CSV files are kept."""
    return settings.home_dir / "serving" / "campaigns"


def commit_plan(
    plan: CampaignPlan,
    history: DecisionLog,
    settings: Settings,
    model_versions: dict[str, str],
) -> Path:
    """Save the plan's CSV under :func:`campaigns_dir` and log every row as a decision
    (the record :func:`decide` writes, with ``campaign_id``, ``holdout`` and the
    ``campaign_offer``), so outcomes can be reported against its ``decision_id`` and the
    caps and cooldowns see its contacts. Returns the CSV's path."""
    folder = campaigns_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{plan.campaign_id}.csv"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(to_csv(plan))
    tmp.replace(path)
    decided_at = plan.created_at.astimezone(UTC).isoformat()
    decisions = [
        {
            "decision_id": row["decision_id"],
            "customer_id": row["customer_id"],
            "channel": plan.channel,
            "decided_at": decided_at,
            "campaign_id": plan.campaign_id,
            "model_versions": model_versions,
            "action": row["action"],
            "offer": None
            if row["action"] == NO_OFFER
            else {
                "offer_id": row["offer_id"],
                "uplift": row["expected_uplift"],
                "p_redeem": row["p_redeem"],
                "expected_incremental_profit": row["expected_profit"],
            },
            "propensity": row["propensity"],
            "explored": False,
            "holdout": bool(row["holdout"]),
            "campaign_offer": row["offer_id"],
            "reason": row["reason"],
        }
        # Column lists zipped: to_dict("records") boxes every cell and costs seconds.
        for row in (
            dict(zip(plan.rows.columns, values, strict=True))
            for values in zip(*(plan.rows[c].tolist() for c in plan.rows.columns), strict=True)
        )
    ]
    history.record_many(decisions)
    log.info("committed campaign %s: %d decisions, %s", plan.campaign_id, len(decisions), path)
    return path
