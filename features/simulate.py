"""Simulate a retailer whose truth is known: customers, orders, engagement and offer tests.

The simulator writes the six contract tables (``customers``, ``orders``, ``order_lines``,
``events``, ``offers``, ``exposures``) exactly as a retailer would export them, and next to
them, in ``ground_truth/``, what no retailer can export: each customer's uplift segment,
true purchase rate and dropout date, and for every offer exposure the exact probability
of buying with and without each offer of the catalogue. Churn and uplift models trained on
the tables can then be scored against the truth instead of against more data.

How the retailer behaves, one day at a time for a chunk of customers:

* A customer buys with a daily probability ``base rate x season x overdue x activity``;
  *overdue* grows as the days since the last order approach the repurchase cycle of the
  customer's main category, *activity* is 1 until the customer starts fading.
* Fading starts with a small daily hazard, raised for 60 days by a complaint and for 30
  by a support ticket, lower for satisfied customers. After 14-60 days of fading (purchases
  and engagement declining) the customer drops out for good: no orders, no events.
* Every ten days a campaign on one channel (email, sms, push in turn) picks a random share
  of the customers who signed up, consented to that channel and did not unsubscribe from
  it, and assigns each uniformly to one of that channel's offers or to control. For the 14
  days after the send, the customer's daily purchase probability is frozen at its value on
  the send day ``p0``, times the offer's multiplier ``m`` (1 for control). Fading can start
  inside a window but lasts at least 14 days, so a dropout inside a window was already
  fixed on the send day and the chance of buying is exactly
  ``1 - (1 - min(p0 * m, 1)) ** w`` with ``w`` the window days before the dropout.
* Customers are persuadable (offers raise ``m`` above 1, more for discount-sensitive
  customers), sure things (high base rate, ``m`` near 1), lost causes (almost no purchases)
  or sleeping dogs (contact lowers ``m`` below 1).

The customers table is the profile as of signup (or as of the start of the period for
earlier customers): the loyalty tier comes from the year of spend *before* the period and
consents are the ones given at signup. Later changes arrive as events (``unsubscribe``),
so no column of ``customers`` leaks the future into a model trained on an earlier cutoff.

Customers are simulated in independent chunks, each with its own random generator derived
from ``(seed, chunk index)``; each chunk becomes one row group of every file, so a million
customers run in the memory of one chunk.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kizuna.features.contracts import (
    CHANNELS,
    CONSENT_CHANNELS,
    CONTRACTS,
    EVENT_TYPES,
    LOYALTY_TIERS,
    ORDER_CHANNELS,
    Contract,
    arrow_schema,
)

logger = logging.getLogger(__name__)

OFFER_WINDOW_DAYS = 14
# Fading never lasts less than an offer window, so a dropout is known at every send.
FADING_DAYS = (14, 60)
CAMPAIGN_EVERY_DAYS = 10
CAMPAIGN_SHARE = 0.4
NEWSLETTER_EVERY_DAYS = 14
NPS_SURVEY_EVERY_DAYS = 91
PRE_PERIOD_SIGNUP_SHARE = 0.35
PRE_PERIOD_MAX_TENURE_DAYS = 3 * 365

SEGMENTS = ("persuadable", "sure_thing", "lost_cause", "sleeping_dog")
SEGMENT_SHARES = (0.40, 0.20, 0.25, 0.15)
# How each segment's base purchase rate compares with a typical customer's.
SEGMENT_RATE = np.array([1.0, 2.2, 0.05, 1.1])
# Beta(a, b) of discount sensitivity per segment: persuadables react to discounts.
SEGMENT_SENSITIVITY = ((4.0, 2.0), (2.0, 4.0), (2.0, 3.0), (1.5, 5.0))
# Typical customer's daily purchase probability before segment and category adjustments.
BASE_DAILY_RATE = 0.026
FIRST_ORDER_AT_SIGNUP = 0.5
FADING_HAZARD = 0.0007

COUNTRIES = ("DE", "FR", "NL", "ES", "IT")
COUNTRY_SHARES = (0.35, 0.25, 0.15, 0.15, 0.10)
ACQUISITION_CHANNELS = ("organic", "paid_search", "paid_social", "referral")
CONSENT_SHARES = {"email": 0.80, "sms": 0.45, "push": 0.55}
PROFILING_OPT_OUT_SHARE = 0.05
ORDER_CHANNEL_SHARES = (0.45, 0.30, 0.15, 0.03, 0.05, 0.02)
TIER_MIN_SPEND = (0.0, 150.0, 500.0, 1500.0)  # bronze, silver, gold, platinum

DAY_US = 86_400_000_000
HOUR_US = 3_600_000_000
NEVER = 10**9  # a day index later than any simulated day


@dataclass(frozen=True)
class Category:
    """A product category and how often its buyers come back for more."""

    name: str
    repurchase_cycle_days: int
    mean_unit_price: float
    return_rate: float


CATEGORIES = (
    Category("grocery", 14, 9.0, 0.01),
    Category("beauty", 30, 18.0, 0.04),
    Category("pet", 30, 22.0, 0.02),
    Category("books", 45, 14.0, 0.03),
    Category("apparel", 60, 35.0, 0.15),
    Category("home", 90, 40.0, 0.05),
    Category("toys", 120, 25.0, 0.04),
    Category("electronics", 365, 110.0, 0.07),
)
PRODUCTS_PER_CATEGORY = 250
CYCLES = np.array([c.repurchase_cycle_days for c in CATEGORIES], dtype=np.float64)
PRODUCT_IDS = tuple(
    f"{c.name[:3].upper()}-{p + 1:04d}" for c in CATEGORIES for p in range(PRODUCTS_PER_CATEGORY)
)


@dataclass(frozen=True)
class SimulatedOffer:
    """An offer of the simulated catalogue and how strongly it moves persuadable customers."""

    offer_id: str
    kind: str
    value: float
    cost: float
    channel: str
    strength: float
    percent_off: float


OFFERS = (
    SimulatedOffer("pct10_email", "percent_discount", 10.0, 0.0, "email", 0.7, 10.0),
    SimulatedOffer("pct20_email", "percent_discount", 20.0, 0.0, "email", 1.3, 20.0),
    SimulatedOffer("freeship_sms", "free_shipping", 0.0, 4.9, "sms", 0.6, 0.0),
    SimulatedOffer("points_push", "loyalty_points", 500.0, 5.0, "push", 0.4, 0.0),
)
OFFER_STRENGTH = np.array([o.strength for o in OFFERS])
OFFER_PERCENT_OFF = np.array([o.percent_off for o in OFFERS])

_EVENT = {name: i for i, name in enumerate(EVENT_TYPES)}
_CHANNEL = {name: i for i, name in enumerate(CHANNELS)}


class SimulationError(ValueError):
    """The simulation was asked for something it cannot produce."""


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote.

    Attributes:
        out: Folder holding the contract tables.
        customers: Customers simulated.
        days: Days simulated.
        seed: Seed of the run.
        period_start: First simulated day.
        period_end: First day after the simulated period (exclusive): every timestamp
            written is before midnight UTC of this day.
        rows: Rows written per contract table.
        ground_truth_rows: Rows written per ground-truth table.
        seconds: Wall-clock time taken.
        tables: Path of each contract table.
        ground_truth: Path of each ground-truth table.
    """

    out: Path
    customers: int
    days: int
    seed: int
    period_start: date
    period_end: date
    rows: dict[str, int]
    ground_truth_rows: dict[str, int]
    seconds: float
    tables: dict[str, Path]
    ground_truth: dict[str, Path]


@dataclass(frozen=True)
class Campaign:
    """One randomised send: who may get which offers, and the chance of each arm."""

    campaign_id: str
    day: int
    channel: str
    offers: tuple[int, ...]

    @property
    def propensity(self) -> float:
        return 1.0 / (len(self.offers) + 1)


def campaign_schedule(days: int) -> list[Campaign]:
    """Campaigns of a period of ``days`` days: one every ten days, channels in turn.

    A campaign is only scheduled if its whole offer window fits in the period.
    """
    out: list[Campaign] = []
    for k, day in enumerate(range(5, days - OFFER_WINDOW_DAYS, CAMPAIGN_EVERY_DAYS)):
        channel = CONSENT_CHANNELS[k % len(CONSENT_CHANNELS)]
        offers = tuple(i for i, o in enumerate(OFFERS) if o.channel == channel)
        out.append(Campaign(f"K{k + 1:04d}", day, channel, offers))
    return out


def offer_multipliers(segment: np.ndarray, discount_sensitivity: np.ndarray) -> np.ndarray:
    """Each customer's true purchase-rate multiplier under each offer (rows x offers)."""
    strength = OFFER_STRENGTH[None, :]
    sensitivity = discount_sensitivity[:, None]
    persuadable = 1.0 + strength * (0.4 + 1.6 * sensitivity)
    sure_thing = 1.0 + 0.08 * strength * sensitivity
    lost_cause = np.ones_like(persuadable)
    # Sleeping dogs resent being contacted; a bigger offer is a louder contact.
    sleeping_dog = np.broadcast_to(np.exp(-(0.25 + 0.3 * strength)), persuadable.shape)
    by_segment = np.stack([persuadable, sure_thing, lost_cause, sleeping_dog])
    return by_segment[segment, np.arange(len(segment))]


def seasonality(start: date, days: int) -> np.ndarray:
    """Daily demand factor: weekends, a summer lull and a November/December peak."""
    dates = np.datetime64(start, "D") + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64) + 1
    weekly = np.array([0.95, 0.93, 0.95, 0.98, 1.04, 1.12, 1.03])[weekday]
    yearly = (
        1.0
        + 0.45 * np.exp(-0.5 * ((day_of_year - 330) / 12.0) ** 2)  # Black Friday weeks
        + 0.40 * np.exp(-0.5 * ((day_of_year - 352) / 7.0) ** 2)  # Christmas shopping
        - 0.12 * np.exp(-0.5 * ((day_of_year - 210) / 25.0) ** 2)  # summer holidays
    )
    return weekly * yearly


def simulate(
    out: Path,
    customers: int,
    days: int,
    seed: int,
    start: date = date(2024, 1, 1),
    chunk_customers: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Simulate a retailer and write its tables and their ground truth under ``out``.

    Args:
        out: Folder to write to; the contract tables go in it, the truth in
            ``out/ground_truth``. Existing files of the same names are replaced.
        customers: Number of customers.
        days: Length of the period in days, starting at ``start``.
        seed: Seed; the same seed and arguments give the same tables.
        start: First day of the period.
        chunk_customers: Customers simulated (and held in memory) at a time.
        progress: Called with ``(customers done, customers in total)`` after each chunk.

    Returns:
        Row counts, paths and timing of what was written.

    Raises:
        SimulationError: If a size is not positive.
    """
    if customers < 1 or days < 1 or chunk_customers < 1:
        raise SimulationError(
            f"customers, days and chunk_customers must be positive, got "
            f"{customers}, {days}, {chunk_customers}"
        )
    began = time.perf_counter()
    end = start + timedelta(days=days)
    if end > datetime.now(UTC).date():
        logger.warning("the simulated period ends %s, in the future; ingest rejects it", end)
    out = Path(out)
    truth_dir = out / "ground_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    tables = {kind: out / f"{kind}.parquet" for kind in SIMULATED_KINDS}
    truths = {kind: truth_dir / f"{kind}.parquet" for kind in _TRUTH_SCHEMAS}

    campaigns = campaign_schedule(days)
    world = _World(
        start=start,
        days=days,
        season=seasonality(start, days),
        campaigns=campaigns,
        product_prices=_product_prices(np.random.default_rng(np.random.SeedSequence(seed))),
        customer_id_width=max(6, len(str(customers))),
    )
    schemas = {kind: contract_schema(CONTRACTS[kind]) for kind in SIMULATED_KINDS}
    schemas["customers"] = _CUSTOMER_SCHEMA
    counters = _Counters()
    rows = dict.fromkeys(SIMULATED_KINDS, 0)
    truth_rows = dict.fromkeys(_TRUTH_SCHEMAS, 0)
    exposures_per_campaign = np.zeros(len(campaigns), dtype=np.int64)

    paths = {**tables, **{f"ground_truth/{k}": p for k, p in truths.items()}}
    all_schemas = {**schemas, **{f"ground_truth/{k}": s for k, s in _TRUTH_SCHEMAS.items()}}
    with _writers(paths, all_schemas) as writers:
        offers = _offers_table(start, end)
        writers["offers"].write_table(offers)
        rows["offers"] = offers.num_rows
        n_chunks = math.ceil(customers / chunk_customers)
        for chunk in range(n_chunks):
            first = chunk * chunk_customers
            n = min(chunk_customers, customers - first)
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk,)))
            chunk_tables = _chunk_tables(rng, world, first, n, counters, exposures_per_campaign)
            for kind, table in chunk_tables:
                if table.num_rows:
                    writers[kind].write_table(table, row_group_size=table.num_rows)
                if kind.startswith("ground_truth/"):
                    truth_rows[kind.removeprefix("ground_truth/")] += table.num_rows
                else:
                    rows[kind] += table.num_rows
                del table
            logger.info("simulated customers %d-%d of %d", first + 1, first + n, customers)
            if progress is not None:
                progress(first + n, customers)
        campaigns_table = _campaigns_table(world, exposures_per_campaign)
        writers["ground_truth/campaigns"].write_table(campaigns_table)
        truth_rows["campaigns"] = campaigns_table.num_rows

    seconds = time.perf_counter() - began
    logger.info("simulated %d customers over %d days in %.1f s: %s", customers, days, seconds, rows)
    return SimulationSummary(
        out=out,
        customers=customers,
        days=days,
        seed=seed,
        period_start=start,
        period_end=end,
        rows=rows,
        ground_truth_rows=truth_rows,
        seconds=seconds,
        tables=tables,
        ground_truth=truths,
    )


# --- Arrow schemas --------------------------------------------------------------------------


def contract_schema(contract: Contract) -> pa.Schema:
    """The Arrow schema of a contract: its columns in order, nullable unless required."""
    return arrow_schema(contract, strict=True)


#: The tables the simulator writes (consent changes are not simulated: each customer keeps
#: the profile of their customer row).
SIMULATED_KINDS = tuple(kind for kind in CONTRACTS if kind != "profile_changes")
_CUSTOMER_SCHEMA = contract_schema(CONTRACTS["customers"]).append(
    pa.field("attr_acquisition_channel", pa.string())
)
_TS = pa.timestamp("us", tz="UTC")
_TRUTH_SCHEMAS = {
    "customers": pa.schema(
        [
            pa.field("customer_id", pa.string(), nullable=False),
            pa.field("segment", pa.string(), nullable=False),
            pa.field("base_purchase_rate", pa.float64(), nullable=False),
            pa.field("fading_start_at", _TS),
            pa.field("true_dropout_at", _TS),
            pa.field("satisfaction", pa.float64(), nullable=False),
            pa.field("discount_sensitivity", pa.float64(), nullable=False),
            pa.field("engagement_habit", pa.float64(), nullable=False),
            pa.field("main_category", pa.string(), nullable=False),
            pa.field("consent_email", pa.bool_(), nullable=False),
            pa.field("consent_sms", pa.bool_(), nullable=False),
            pa.field("consent_push", pa.bool_(), nullable=False),
            *[pa.field(f"offer_multiplier_{o.offer_id}", pa.float64()) for o in OFFERS],
        ]
    ),
    "offer_effects": pa.schema(
        [
            pa.field("exposure_id", pa.string(), nullable=False),
            pa.field("customer_id", pa.string(), nullable=False),
            pa.field("campaign_id", pa.string(), nullable=False),
            pa.field("offer_id", pa.string(), nullable=False),
            pa.field("assigned", pa.bool_(), nullable=False),
            pa.field("window_days", pa.int64(), nullable=False),
            pa.field("active_window_days", pa.int64(), nullable=False),
            pa.field("p_buy_if_offer", pa.float64(), nullable=False),
            pa.field("p_buy_if_control", pa.float64(), nullable=False),
            pa.field("true_uplift", pa.float64(), nullable=False),
        ]
    ),
    "campaigns": pa.schema(
        [
            pa.field("campaign_id", pa.string(), nullable=False),
            pa.field("sent_on", _TS, nullable=False),
            pa.field("channel", pa.string(), nullable=False),
            pa.field("offer_ids", pa.string(), nullable=False),
            pa.field("selection_share", pa.float64(), nullable=False),
            pa.field("propensity", pa.float64(), nullable=False),
            pa.field("window_days", pa.int64(), nullable=False),
            pa.field("exposures", pa.int64(), nullable=False),
        ]
    ),
}


@contextmanager
def _writers(
    paths: dict[str, Path], schemas: dict[str, pa.Schema]
) -> Iterator[dict[str, pq.ParquetWriter]]:
    """Parquet writers that land under their final names only if everything was written."""
    partial = {kind: path.with_suffix(".parquet.partial") for kind, path in paths.items()}
    writers = {kind: pq.ParquetWriter(partial[kind], schemas[kind]) for kind in paths}
    try:
        yield writers
    except BaseException:
        for kind, writer in writers.items():
            writer.close()
            partial[kind].unlink(missing_ok=True)
        raise
    for kind, writer in writers.items():
        writer.close()
        partial[kind].replace(paths[kind])


# --- The world shared by all chunks -----------------------------------------------------------


@dataclass(frozen=True)
class _World:
    start: date
    days: int
    season: np.ndarray
    campaigns: list[Campaign]
    product_prices: np.ndarray  # categories x products
    customer_id_width: int

    @property
    def start_us(self) -> int:
        """Microseconds from the Unix epoch to midnight UTC of the first day."""
        return (self.start - date(1970, 1, 1)).days * DAY_US


@dataclass
class _Counters:
    """Ids already handed out, so ids stay unique across chunks."""

    orders: int = 0
    events: int = 0
    exposures: int = 0


def _product_prices(rng: np.random.Generator) -> np.ndarray:
    means = np.array([c.mean_unit_price for c in CATEGORIES])[:, None]
    prices = means * rng.lognormal(0.0, 0.5, (len(CATEGORIES), PRODUCTS_PER_CATEGORY))
    return np.round(np.maximum(prices, 0.5), 2)


def _offers_table(start: date, end: date) -> pa.Table:
    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=UTC)

    columns = {
        "offer_id": [o.offer_id for o in OFFERS],
        "kind": [o.kind for o in OFFERS],
        "value": [o.value for o in OFFERS],
        "cost": [o.cost for o in OFFERS],
        "channel": [o.channel for o in OFFERS],
        "valid_from": [midnight(start)] * len(OFFERS),
        # Open-ended: the catalogue stays valid after the simulated period (for serving).
        "valid_to": [None] * len(OFFERS),
        "eligibility": [None] * len(OFFERS),
    }
    return pa.table(columns, schema=contract_schema(CONTRACTS["offers"]))


def _campaigns_table(world: _World, exposures: np.ndarray) -> pa.Table:
    columns = {
        "campaign_id": [c.campaign_id for c in world.campaigns],
        "sent_on": pa.array(
            [world.start_us + c.day * DAY_US for c in world.campaigns], pa.int64()
        ).cast(_TS),
        "channel": [c.channel for c in world.campaigns],
        "offer_ids": [",".join(OFFERS[i].offer_id for i in c.offers) for c in world.campaigns],
        "selection_share": [CAMPAIGN_SHARE] * len(world.campaigns),
        "propensity": [c.propensity for c in world.campaigns],
        "window_days": [OFFER_WINDOW_DAYS] * len(world.campaigns),
        "exposures": exposures.tolist(),
    }
    return pa.table(columns, schema=_TRUTH_SCHEMAS["campaigns"])


# --- One chunk of customers ------------------------------------------------------------------


@dataclass
class _Customers:
    """A chunk's customers: what the retailer knows and what only the simulator knows."""

    n: int
    segment: np.ndarray
    signup_day: np.ndarray
    signup_tod_us: np.ndarray
    country: np.ndarray
    acquisition: np.ndarray
    preferences: np.ndarray  # customers x categories
    main_category: np.ndarray
    cycle: np.ndarray
    discount_sensitivity: np.ndarray
    habit: np.ndarray
    satisfaction: np.ndarray
    base_rate: np.ndarray
    price_level: np.ndarray
    order_channel: np.ndarray
    consent: dict[str, np.ndarray]
    consent_profiling: np.ndarray
    tier: np.ndarray
    multipliers: np.ndarray  # customers x offers


def _draw_customers(rng: np.random.Generator, n: int, days: int) -> _Customers:
    segment = rng.choice(len(SEGMENTS), n, p=SEGMENT_SHARES)
    before = rng.random(n) < PRE_PERIOD_SIGNUP_SHARE
    signup_day = np.where(
        before,
        -rng.integers(1, PRE_PERIOD_MAX_TENURE_DAYS + 1, n),
        rng.integers(0, days, n),
    )
    # Signups during the period happen before 06:00, everything else after, so no event
    # of a customer's first day precedes the signup.
    signup_tod_us = np.where(before, rng.integers(0, DAY_US, n), rng.integers(0, 6 * HOUR_US, n))
    preferences = rng.dirichlet(np.full(len(CATEGORIES), 0.6), n)
    main_category = preferences.argmax(axis=1)
    cycle = CYCLES[main_category]
    a_b = np.array(SEGMENT_SENSITIVITY)[segment]
    discount_sensitivity = rng.beta(a_b[:, 0], a_b[:, 1])
    habit = rng.gamma(2.0, 0.5, n)
    satisfaction = rng.beta(4.0, 2.0, n)
    # Frequent-cycle shoppers (grocery) buy more often than electronics shoppers.
    base_rate = (
        rng.gamma(2.0, BASE_DAILY_RATE / 2.0, n) * SEGMENT_RATE[segment] * np.sqrt(45.0 / cycle)
    )
    price_level = rng.lognormal(0.0, 0.35, n)
    acquisition_shares = np.array(
        [[0.3, 0.2, 0.4, 0.1], [0.4, 0.3, 0.1, 0.2], [0.3, 0.3, 0.3, 0.1], [0.45, 0.25, 0.1, 0.2]]
    )[segment]
    acquisition = (acquisition_shares.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
    consent = {ch: rng.random(n) < share for ch, share in CONSENT_SHARES.items()}
    consent_profiling = rng.random(n) >= PROFILING_OPT_OUT_SHARE

    # Loyalty tier from the year of spend before the period, never from spend inside it.
    tenure = np.clip(-signup_day, 0, 365)
    basket = preferences @ np.array([c.mean_unit_price for c in CATEGORIES]) * 1.6
    pre_orders = rng.poisson(base_rate * tenure)
    pre_spend = pre_orders * basket * price_level * rng.lognormal(0.0, 0.2, n)
    tier = np.searchsorted(np.array(TIER_MIN_SPEND), pre_spend, side="right") - 1

    return _Customers(
        n=n,
        segment=segment,
        signup_day=signup_day,
        signup_tod_us=signup_tod_us,
        country=rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARES),
        acquisition=acquisition,
        preferences=preferences,
        main_category=main_category,
        cycle=cycle,
        discount_sensitivity=discount_sensitivity,
        habit=habit,
        satisfaction=satisfaction,
        base_rate=base_rate,
        price_level=price_level,
        order_channel=rng.choice(len(ORDER_CHANNELS), n, p=ORDER_CHANNEL_SHARES),
        consent=consent,
        consent_profiling=consent_profiling,
        tier=tier,
        multipliers=offer_multipliers(segment, discount_sensitivity),
    )


class _Log:
    """Rows appended day by day as parallel arrays, concatenated once at the end."""

    def __init__(self, *names: str) -> None:
        self._parts: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def add(self, **columns: np.ndarray | float | int) -> None:
        size = max((np.size(v) for v in columns.values() if np.ndim(v) > 0), default=1)
        for name, parts in self._parts.items():
            parts.append(np.broadcast_to(np.asarray(columns[name]), (size,)))

    def columns(self) -> dict[str, np.ndarray]:
        return {
            name: np.concatenate(parts) if parts else np.empty(0)
            for name, parts in self._parts.items()
        }


@dataclass
class _History:
    """What happened to a chunk's customers, day by day, as raw arrays."""

    purchases: dict[str, np.ndarray]  # customer, day, category, offer
    events: dict[str, np.ndarray]  # customer, day, type, value, channel, tod
    exposures: dict[str, np.ndarray]  # customer, day, campaign, offer, p0, active_days
    fading_start: np.ndarray
    dropout: np.ndarray
    unsubscribed: dict[str, np.ndarray]


def _run_days(rng: np.random.Generator, cu: _Customers, world: _World) -> _History:  # noqa: PLR0915
    """Walk the chunk's customers through the period one day at a time."""
    n, days = cu.n, world.days
    campaigns = {c.day: (k, c) for k, c in enumerate(world.campaigns)}
    signup = cu.signup_day
    earlier = signup < 0
    # Customers from before the period are part-way through their cycles on day 0.
    last_buy = np.where(
        earlier, np.maximum(-rng.integers(0, (1.5 * cu.cycle).astype(np.int64) + 1), signup), signup
    )
    last_in_category = np.where(
        earlier[:, None],
        np.maximum(
            -rng.integers(0, 2 * CYCLES.astype(np.int64) + 1, (n, len(CYCLES))), signup[:, None]
        ),
        signup[:, None],
    )
    first_order_chance = FIRST_ORDER_AT_SIGNUP * np.minimum(1.0, SEGMENT_RATE[cu.segment])
    fading_risk = FADING_HAZARD * np.exp(2.5 * (0.65 - cu.satisfaction))
    fading_start = np.full(n, NEVER, dtype=np.int64)
    dropout = np.full(n, NEVER, dtype=np.int64)
    last_complaint = np.full(n, -NEVER, dtype=np.int64)
    last_ticket = np.full(n, -NEVER, dtype=np.int64)
    unsubscribed = {ch: np.full(n, NEVER, dtype=np.int64) for ch in CONSENT_CHANNELS}
    contacts = np.full((n, 3), -NEVER, dtype=np.int64)  # the last three offer sends
    window_sent = np.full(n, -NEVER, dtype=np.int64)
    window_p = np.zeros(n)
    window_offer = np.full(n, -1, dtype=np.int64)
    window_redeemed = np.zeros(n, dtype=bool)
    dissatisfaction = 1.6 - cu.satisfaction
    ticket_rate = 0.0012 * dissatisfaction
    complaint_rate = 0.0004 * dissatisfaction**2
    session_rate = 0.012 * cu.habit
    push_rate = 0.003 * cu.habit * cu.consent["push"]
    email_open_rate = np.minimum(0.9, 0.18 * cu.habit) * cu.consent["email"]
    season_engagement = np.sqrt(world.season)

    purchases = _Log("customer", "day", "category", "offer")
    events = _Log("customer", "day", "type", "value", "channel", "tod")
    exposures = _Log("customer", "day", "campaign", "offer", "p0", "active_days")
    for d in range(days):
        signed = signup <= d
        # Fading starts from yesterday's complaints and tickets.
        hazard = fading_risk * (
            1.0 + 5.0 * (d - last_complaint <= 60) + 1.5 * (d - last_ticket <= 30)
        )
        starts = np.flatnonzero(signed & (fading_start == NEVER) & (rng.random(n) < hazard))
        if starts.size:
            fading_start[starts] = d
            dropout[starts] = d + rng.integers(FADING_DAYS[0], FADING_DAYS[1] + 1, starts.size)
        active = signed & (d < dropout)
        activity = active.astype(np.float64)
        fading = np.flatnonzero(active & (fading_start <= d))
        if fading.size:
            done = (d - fading_start[fading]) / (dropout[fading] - fading_start[fading])
            activity[fading] = 1.0 - 0.8 * done
        engagement = activity * activity

        recency = (d - last_buy) / cu.cycle
        overdue = 0.25 + 1.5 * recency * recency / (1.0 + recency * recency)
        p = cu.base_rate * world.season[d] * overdue * activity
        p = np.where(signup == d, first_order_chance, p)
        np.minimum(p, 1.0, out=p)
        in_window = (window_sent < d) & (d <= window_sent + OFFER_WINDOW_DAYS)
        p = np.where(in_window, window_p * active, p)

        if d in campaigns:
            k, campaign = campaigns[d]
            channel = campaign.channel
            eligible = (
                (signup < d)
                & cu.consent[channel]
                & (unsubscribed[channel] > d)
                & (window_sent + OFFER_WINDOW_DAYS < d)
            )
            chosen = np.flatnonzero(eligible & (rng.random(n) < CAMPAIGN_SHARE))
            arm = rng.integers(0, len(campaign.offers) + 1, chosen.size)
            offer = np.array([*campaign.offers, -1])[arm]
            p0 = p[chosen]
            active_days = np.clip(dropout[chosen] - d - 1, 0, OFFER_WINDOW_DAYS)
            m = np.where(offer >= 0, cu.multipliers[chosen, np.maximum(offer, 0)], 1.0)
            window_sent[chosen] = d
            window_p[chosen] = np.minimum(p0 * m, 1.0)
            window_offer[chosen] = offer
            window_redeemed[chosen] = False
            exposures.add(
                customer=chosen, day=d, campaign=k, offer=offer, p0=p0, active_days=active_days
            )
            # Each send risks an unsubscribe, more so the more sends in the last 30 days.
            treated = chosen[(offer >= 0) & active[chosen]]
            recent = (d - contacts[treated] <= 30).sum(axis=1)
            contacts[treated] = np.column_stack([contacts[treated, 1:], np.full(treated.size, d)])
            leaving = treated[rng.random(treated.size) < 0.004 * (1 + 2 * recent)]
            _unsubscribe(rng, events, unsubscribed, leaving, channel, d, dropout, days)

        buyers = np.flatnonzero(rng.random(n) < p)
        if buyers.size:
            since = d - last_in_category[buyers]
            weights = cu.preferences[buyers] * (0.3 + np.minimum(since / CYCLES, 2.0))
            cumulative = weights.cumsum(axis=1)
            pick = rng.random(buyers.size) * cumulative[:, -1]
            category = np.minimum((cumulative < pick[:, None]).sum(axis=1), len(CYCLES) - 1)
            redeems = in_window[buyers] & (window_offer[buyers] >= 0) & ~window_redeemed[buyers]
            window_redeemed[buyers[redeems]] = True
            purchases.add(
                customer=buyers,
                day=d,
                category=category,
                offer=np.where(redeems, window_offer[buyers], -1),
            )
            last_buy[buyers] = d
            last_in_category[buyers, category] = d

        # One draw decides the day's rare events; they exclude each other, which at these
        # rates changes nothing visible and saves a draw per event type.
        recent_order = 1.0 + 2.0 * (d - last_buy <= 7)
        ticket_edge = ticket_rate * recent_order * active
        complaint_edge = ticket_edge + complaint_rate * recent_order * active
        session_edge = complaint_edge + session_rate * season_engagement[d] * engagement
        push_ok = unsubscribed["push"] > d
        push_edge = session_edge + push_rate * engagement * push_ok
        u = rng.random(n)
        tickets = np.flatnonzero(u < ticket_edge)
        complaints = np.flatnonzero((u >= ticket_edge) & (u < complaint_edge))
        sessions = np.flatnonzero((u >= complaint_edge) & (u < session_edge))
        pushes = np.flatnonzero((u >= session_edge) & (u < push_edge))
        last_ticket[tickets] = d
        last_complaint[complaints] = d
        for who, kind, channel in (
            (tickets, "support_ticket", -1),
            (complaints, "complaint", -1),
            (sessions, "session", -1),
            (pushes, "push_open", _CHANNEL["push"]),
        ):
            if who.size:
                events.add(
                    customer=who, day=d, type=_EVENT[kind], value=np.nan, channel=channel, tod=-1
                )

        if d % NEWSLETTER_EVERY_DAYS == 3:
            _newsletter(
                rng,
                cu,
                events,
                unsubscribed,
                contacts,
                engagement,
                active,
                d,
                dropout,
                days,
                email_open_rate,
            )
        if d % NPS_SURVEY_EVERY_DAYS == 45:
            asked = np.flatnonzero(active & (rng.random(n) < 0.2 * 0.3))
            score = (
                2.0
                + 8.0 * cu.satisfaction[asked]
                - 2.0 * (activity[asked] < 1.0)
                + rng.normal(0.0, 1.2, asked.size)
            )
            events.add(
                customer=asked,
                day=d,
                type=_EVENT["nps_response"],
                value=np.clip(np.round(score), 0, 10),
                channel=-1,
                tod=-1,
            )

    return _History(
        purchases=purchases.columns(),
        events=events.columns(),
        exposures=exposures.columns(),
        fading_start=fading_start,
        dropout=dropout,
        unsubscribed=unsubscribed,
    )


def _unsubscribe(
    rng: np.random.Generator,
    events: _Log,
    unsubscribed: dict[str, np.ndarray],
    who: np.ndarray,
    channel: str,
    day: int,
    dropout: np.ndarray,
    days: int,
) -> None:
    """Unsubscribe ``who`` from ``channel`` within three days of ``day`` (if still around)."""
    when = day + rng.integers(0, 3, who.size)
    keep = (when < dropout[who]) & (when < days) & (unsubscribed[channel][who] == NEVER)
    who, when = who[keep], when[keep]
    unsubscribed[channel][who] = when
    # Same-day unsubscribes come after the 09:00 send.
    tod = rng.integers(10 * HOUR_US, 22 * HOUR_US, who.size)
    events.add(
        customer=who,
        day=when,
        type=_EVENT["unsubscribe"],
        value=np.nan,
        channel=_CHANNEL[channel],
        tod=tod,
    )


def _newsletter(
    rng: np.random.Generator,
    cu: _Customers,
    events: _Log,
    unsubscribed: dict[str, np.ndarray],
    contacts: np.ndarray,
    engagement: np.ndarray,
    active: np.ndarray,
    day: int,
    dropout: np.ndarray,
    days: int,
    open_rate: np.ndarray,
) -> None:
    """Send the newsletter to email subscribers; opens and clicks follow within 3 days."""
    receives = (cu.signup_day < day) & (unsubscribed["email"] > day) & cu.consent["email"]
    opened = np.flatnonzero(receives & (rng.random(cu.n) < open_rate * engagement))
    when = day + np.minimum(rng.geometric(0.6, opened.size) - 1, 3)
    keep = (when < dropout[opened]) & (when < days)
    opened, when = opened[keep], when[keep]
    tod = rng.integers(6 * HOUR_US, 22 * HOUR_US, opened.size)
    events.add(
        customer=opened,
        day=when,
        type=_EVENT["email_open"],
        value=np.nan,
        channel=_CHANNEL["email"],
        tod=tod,
    )
    clicked = rng.random(opened.size) < 0.25
    events.add(
        customer=opened[clicked],
        day=when[clicked],
        type=_EVENT["email_click"],
        value=np.nan,
        channel=_CHANNEL["email"],
        tod=tod[clicked] + rng.integers(10_000_000, 900_000_000, clicked.sum()),
    )
    recipients = np.flatnonzero(receives & active)
    recent = (day - contacts[recipients] <= 30).sum(axis=1)
    leaving = recipients[rng.random(recipients.size) < 0.0008 * (1 + 2 * recent)]
    _unsubscribe(rng, events, unsubscribed, leaving, "email", day, dropout, days)


def _chunk_tables(
    rng: np.random.Generator,
    world: _World,
    first: int,
    n: int,
    counters: _Counters,
    exposures_per_campaign: np.ndarray,
) -> Iterator[tuple[str, pa.Table]]:
    """Simulate one chunk of customers and yield its tables one at a time.

    Tables are built and handed out one after the other, and each intermediate is dropped
    once its table is out, so a chunk never holds all its tables at once.
    """
    cu = _draw_customers(rng, n, world.days)
    history = _run_days(rng, cu, world)
    customer_ids = _ids("C", np.arange(first + 1, first + n + 1), world.customer_id_width)
    yield "customers", _customers_table(cu, customer_ids, world)
    yield "ground_truth/customers", _truth_customers_table(cu, history, customer_ids, world)

    orders, lines = _orders_and_lines(rng, cu, history, world)
    order_ids = _ids("O", counters.orders + 1 + np.arange(orders["customer"].size), 9)
    counters.orders += orders["customer"].size
    yield "orders", _orders_table(orders, order_ids, customer_ids, world)
    yield "order_lines", _order_lines_table(lines, order_ids)
    del lines, order_ids

    events = _events(rng, cu, history, orders, world)
    del orders
    event_ids = _ids("E", counters.events + 1 + np.arange(events["customer"].size), 10)
    counters.events += events["customer"].size
    yield "events", _events_table(events, event_ids, customer_ids, world)
    del events, event_ids

    exposures = history.exposures
    by_time = np.lexsort((exposures["customer"], exposures["day"]))
    exposures = {k: v[by_time] for k, v in exposures.items()}
    exposure_ids = _ids("X", counters.exposures + 1 + np.arange(by_time.size), 9)
    counters.exposures += by_time.size
    exposures_per_campaign += np.bincount(
        exposures["campaign"].astype(np.int64), minlength=len(world.campaigns)
    )
    yield "exposures", _exposures_table(rng, exposures, exposure_ids, customer_ids, world)
    yield (
        "ground_truth/offer_effects",
        _offer_effects_table(cu, exposures, exposure_ids, customer_ids, world),
    )


def _orders_and_lines(
    rng: np.random.Generator, cu: _Customers, history: _History, world: _World
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Orders and returns, in time order, with their lines, from the day-by-day purchases."""
    bought = history.purchases
    customer = bought["customer"].astype(np.int64)
    day = bought["day"].astype(np.int64)
    category = bought["category"].astype(np.int64)
    offer = bought["offer"].astype(np.int64)
    n_orders = customer.size
    tod = rng.integers(7 * HOUR_US, 23 * HOUR_US, n_orders)

    n_lines = rng.choice(3, n_orders, p=(0.55, 0.30, 0.15)) + 1
    line_order = np.repeat(np.arange(n_orders), n_lines)
    first_line = np.cumsum(n_lines) - n_lines
    line_number = np.arange(line_order.size) - first_line[line_order] + 1
    popularity = 1.0 / np.arange(1, PRODUCTS_PER_CATEGORY + 1) ** 0.9
    product = np.searchsorted(np.cumsum(popularity) / popularity.sum(), rng.random(line_order.size))
    product = np.minimum(product, PRODUCTS_PER_CATEGORY - 1)
    line_category = category[line_order]
    unit_price = np.round(
        world.product_prices[line_category, product] * cu.price_level[customer[line_order]], 2
    )
    unit_price = np.maximum(unit_price, 0.01)
    quantity = rng.choice(3, line_order.size, p=(0.8, 0.15, 0.05)) + 1.0
    line_value = quantity * unit_price
    gross = np.bincount(line_order, weights=line_value, minlength=n_orders)
    percent_off = np.where(offer >= 0, OFFER_PERCENT_OFF[np.maximum(offer, 0)], 0.0)
    discount = np.where(
        percent_off > 0, np.maximum(np.round(gross * percent_off / 100.0, 2), 0.01), 0.0
    )
    amount = np.round(gross - discount, 2)
    own_channel = rng.random(n_orders) < 0.75
    channel = np.where(
        own_channel,
        cu.order_channel[customer],
        rng.choice(len(ORDER_CHANNELS), n_orders, p=ORDER_CHANNEL_SHARES),
    )

    # Returns: one line sent back 3-30 days later, refunded net of the order's discount.
    return_rate = np.array([c.return_rate for c in CATEGORIES])[category]
    returned = np.flatnonzero(rng.random(n_orders) < return_rate)
    return_day = day[returned] + rng.integers(3, 31, returned.size)
    keep = (return_day < world.days) & (return_day < history.dropout[customer[returned]])
    returned, return_day = returned[keep], return_day[keep]
    returned_line = first_line[returned] + rng.integers(0, n_lines[returned])
    refund = np.round(line_value[returned_line] * (1.0 - percent_off[returned] / 100.0), 2)

    n_returns = returned.size
    all_day = np.concatenate([day, return_day])
    all_tod = np.concatenate([tod, rng.integers(7 * HOUR_US, 23 * HOUR_US, n_returns)])
    time_order = np.lexsort((all_tod, all_day))
    rank = np.empty_like(time_order)
    rank[time_order] = np.arange(time_order.size)

    orders = {
        "customer": np.concatenate([customer, customer[returned]])[time_order],
        "day": all_day[time_order],
        "tod": all_tod[time_order],
        "amount": np.concatenate([amount, -refund])[time_order],
        "discount": np.concatenate([discount, np.zeros(n_returns)])[time_order],
        "offer": np.concatenate([offer, np.full(n_returns, -1)])[time_order],
        "channel": np.concatenate([channel, channel[returned]])[time_order],
        "is_return": np.concatenate([np.zeros(n_orders, bool), np.ones(n_returns, bool)])[
            time_order
        ],
    }
    lines = {
        "order": np.concatenate([rank[line_order], rank[n_orders + np.arange(n_returns)]]),
        "line_number": np.concatenate([line_number, np.ones(n_returns, np.int64)]),
        "product": np.concatenate(
            [
                line_category * PRODUCTS_PER_CATEGORY + product,
                (line_category * PRODUCTS_PER_CATEGORY + product)[returned_line],
            ]
        ),
        "quantity": np.concatenate([quantity, -quantity[returned_line]]),
        "unit_price": np.concatenate([unit_price, unit_price[returned_line]]),
    }
    line_sort = np.lexsort((lines["line_number"], lines["order"]))
    lines = {k: v[line_sort] for k, v in lines.items()}
    return orders, lines


def _events(  # noqa: PLR0915 - to split with simulate.py (issue 13)
    rng: np.random.Generator,
    cu: _Customers,
    history: _History,
    orders: dict[str, np.ndarray],
    world: _World,
) -> dict[str, np.ndarray]:
    """All events in time order: the daily ones plus those that follow from orders."""
    ev = history.events
    # An open of a message sent before an unsubscribe can fall after it; drop it, so that
    # nothing comes on a channel after the customer left it.
    keep = np.ones(ev["day"].size, dtype=bool)
    for name, left_on in history.unsubscribed.items():
        on_channel = (ev["channel"] == _CHANNEL[name]) & (ev["type"] != _EVENT["unsubscribe"])
        keep &= ~(on_channel & (ev["day"] >= left_on[ev["customer"].astype(np.int64)]))
    customer = ev["customer"].astype(np.int64)[keep]
    day = ev["day"].astype(np.int64)[keep]
    kind = ev["type"].astype(np.int64)[keep]
    value = ev["value"].astype(np.float64)[keep]
    channel = ev["channel"].astype(np.int64)[keep]
    tod = ev["tod"].astype(np.int64)[keep]
    untimed = tod < 0
    tod[untimed] = rng.integers(6 * HOUR_US, 23 * HOUR_US, untimed.sum())

    purchase = np.flatnonzero(~orders["is_return"])
    buyer = orders["customer"][purchase]
    bought_on = orders["day"][purchase]
    bought_at = orders["tod"][purchase]

    # Browsing leads buying: 0-3 sessions in the days up to each order.
    n_before = rng.choice(4, purchase.size, p=(0.2, 0.45, 0.25, 0.1))
    lead_of = np.repeat(np.arange(purchase.size), n_before)
    lag = np.minimum(rng.geometric(0.45, lead_of.size) - 1, 6)
    lead_day = bought_on[lead_of] - lag
    lead_tod = np.where(
        lag == 0,
        bought_at[lead_of] - rng.integers(60_000_000, HOUR_US, lead_of.size),
        rng.integers(6 * HOUR_US, 23 * HOUR_US, lead_of.size),
    )
    ok = lead_day >= np.maximum(cu.signup_day[buyer[lead_of]], 0)
    lead_customer, lead_day, lead_tod = buyer[lead_of][ok], lead_day[ok], lead_tod[ok]

    # Reviews of some orders, 2-14 days later, with stars that follow satisfaction.
    reviewed = np.flatnonzero(rng.random(purchase.size) < 0.12)
    review_day = bought_on[reviewed] + rng.integers(2, 15, reviewed.size)
    reviewer = buyer[reviewed]
    keep = (review_day < world.days) & (review_day < history.dropout[reviewer])
    reviewer, review_day = reviewer[keep], review_day[keep]
    stars = np.clip(
        np.round(1.0 + 4.0 * cu.satisfaction[reviewer] + rng.normal(0, 0.7, reviewer.size)), 1, 5
    )

    # CSAT after half the support tickets, the same or the next day.
    ticket = np.flatnonzero(kind == _EVENT["support_ticket"])
    rated = ticket[rng.random(ticket.size) < 0.5]
    csat_day = day[rated] + rng.integers(0, 2, rated.size)
    csat_tod = np.where(
        csat_day == day[rated],
        np.minimum(tod[rated] + HOUR_US, DAY_US - 1),
        rng.integers(6 * HOUR_US, 23 * HOUR_US, rated.size),
    )
    rater = customer[rated]
    keep = (csat_day < world.days) & (csat_day < history.dropout[rater])
    rater, csat_day, csat_tod = rater[keep], csat_day[keep], csat_tod[keep]
    csat = np.clip(
        np.round(1.0 + 4.0 * cu.satisfaction[rater] + rng.normal(0, 0.9, rater.size)), 1, 5
    )

    session = kind == _EVENT["session"]
    session_customer = np.concatenate([customer[session], lead_customer])
    session_day = np.concatenate([day[session], lead_day])
    session_tod = np.concatenate([tod[session], lead_tod])
    pages = 1.0 + rng.poisson(1.0 + 1.5 * cu.habit[session_customer])
    page_tod = session_tod + rng.integers(1_000_000, 60_000_000, session_customer.size)

    n_sessions = session_customer.size
    parts = [
        (
            customer[~session],
            day[~session],
            tod[~session],
            kind[~session],
            value[~session],
            channel[~session],
        ),
        (
            session_customer,
            session_day,
            session_tod,
            np.full(n_sessions, _EVENT["session"]),
            np.full(n_sessions, np.nan),
            np.full(n_sessions, -1),
        ),
        (
            session_customer,
            session_day,
            page_tod,
            np.full(n_sessions, _EVENT["page_view"]),
            pages,
            np.full(n_sessions, -1),
        ),
        (
            reviewer,
            review_day,
            rng.integers(6 * HOUR_US, 23 * HOUR_US, reviewer.size),
            np.full(reviewer.size, _EVENT["review"]),
            stars,
            np.full(reviewer.size, -1),
        ),
        (
            rater,
            csat_day,
            csat_tod,
            np.full(rater.size, _EVENT["csat_response"]),
            csat,
            np.full(rater.size, -1),
        ),
    ]
    # Narrow types: a chunk's events are its largest table.
    dtypes = (np.int32, np.int32, np.int64, np.int8, np.float64, np.int8)
    columns = [
        np.concatenate([p[i] for p in parts]).astype(dtype, copy=False)
        for i, dtype in enumerate(dtypes)
    ]
    del parts
    time_order = np.lexsort((columns[3], columns[2], columns[1]))
    names = ("customer", "day", "tod", "type", "value", "channel")
    return {name: col[time_order] for name, col in zip(names, columns, strict=True)}


# --- Arrow tables ------------------------------------------------------------------------------


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pa.array(numbers, pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(digits, width=width, padding="0"), "")


def _labels(codes: np.ndarray, labels: tuple[str, ...] | list[str]) -> pa.Array:
    """Strings from integer codes; negative codes become nulls."""
    codes = np.asarray(codes, dtype=np.int32)
    indices = pa.array(codes, mask=codes < 0)
    return pa.DictionaryArray.from_arrays(indices, pa.array(labels, pa.string())).cast(pa.string())


def _timestamps(
    world: _World, day: np.ndarray, tod: np.ndarray | int = 0, missing: np.ndarray | None = None
) -> pa.Array:
    """UTC timestamps from day indices and microseconds into the day; null where missing."""
    day = np.asarray(day, dtype=np.int64)
    if missing is not None:
        day = np.where(missing, 0, day)
    return pa.array(world.start_us + day * DAY_US + tod, pa.int64(), mask=missing).cast(_TS)


def _customers_table(cu: _Customers, ids: pa.Array, world: _World) -> pa.Table:
    columns = [
        ids,
        _timestamps(world, cu.signup_day, cu.signup_tod_us),
        _labels(cu.country, COUNTRIES),
        _labels(cu.tier, LOYALTY_TIERS),
        pa.array(cu.consent["email"]),
        pa.array(cu.consent["sms"]),
        pa.array(cu.consent["push"]),
        pa.array(cu.consent_profiling),
        _labels(cu.acquisition, ACQUISITION_CHANNELS),
    ]
    return pa.Table.from_arrays(columns, schema=_CUSTOMER_SCHEMA)


def _orders_table(
    orders: dict[str, np.ndarray], ids: pa.Array, customer_ids: pa.Array, world: _World
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            ids,
            customer_ids.take(pa.array(orders["customer"])),
            _timestamps(world, orders["day"], orders["tod"]),
            pa.array(orders["amount"], pa.float64()),
            pa.array(orders["discount"], pa.float64()),
            _labels(orders["offer"], [o.offer_id for o in OFFERS]),
            _labels(orders["channel"], ORDER_CHANNELS),
            pa.array(orders["is_return"]),
        ],
        schema=contract_schema(CONTRACTS["orders"]),
    )


def _order_lines_table(lines: dict[str, np.ndarray], order_ids: pa.Array) -> pa.Table:
    return pa.Table.from_arrays(
        [
            order_ids.take(pa.array(lines["order"])),
            pa.array(lines["line_number"], pa.int64()),
            _labels(lines["product"], PRODUCT_IDS),
            _labels(lines["product"] // PRODUCTS_PER_CATEGORY, [c.name for c in CATEGORIES]),
            pa.array(lines["quantity"], pa.float64()),
            pa.array(lines["unit_price"], pa.float64()),
        ],
        schema=contract_schema(CONTRACTS["order_lines"]),
    )


def _events_table(
    events: dict[str, np.ndarray], ids: pa.Array, customer_ids: pa.Array, world: _World
) -> pa.Table:
    value = events["value"]
    return pa.Table.from_arrays(
        [
            ids,
            customer_ids.take(pa.array(events["customer"])),
            _timestamps(world, events["day"], events["tod"]),
            _labels(events["type"], EVENT_TYPES),
            pa.array(value, pa.float64(), mask=np.isnan(value)),
            _labels(events["channel"], CHANNELS),
        ],
        schema=contract_schema(CONTRACTS["events"]),
    )


def _exposures_table(
    rng: np.random.Generator,
    exposures: dict[str, np.ndarray],
    ids: pa.Array,
    customer_ids: pa.Array,
    world: _World,
) -> pa.Table:
    campaign = exposures["campaign"].astype(np.int64)
    channels = np.array([_CHANNEL[c.channel] for c in world.campaigns], dtype=np.int64)
    propensity = np.array([c.propensity for c in world.campaigns])
    sent_tod = rng.integers(9 * HOUR_US, 10 * HOUR_US, campaign.size)
    return pa.Table.from_arrays(
        [
            ids,
            customer_ids.take(pa.array(exposures["customer"].astype(np.int64))),
            _labels(exposures["offer"], [o.offer_id for o in OFFERS]),
            _timestamps(world, exposures["day"], sent_tod),
            _labels(channels[campaign], CHANNELS),
            pa.array(propensity[campaign], pa.float64()),
        ],
        schema=contract_schema(CONTRACTS["exposures"]),
    )


def _truth_customers_table(
    cu: _Customers, history: _History, ids: pa.Array, world: _World
) -> pa.Table:
    fading, dropout = history.fading_start, history.dropout
    return pa.Table.from_arrays(
        [
            ids,
            _labels(cu.segment, SEGMENTS),
            pa.array(cu.base_rate, pa.float64()),
            _timestamps(world, fading, missing=fading >= world.days),
            _timestamps(world, dropout, missing=dropout >= world.days),
            pa.array(cu.satisfaction, pa.float64()),
            pa.array(cu.discount_sensitivity, pa.float64()),
            pa.array(cu.habit, pa.float64()),
            _labels(cu.main_category, [c.name for c in CATEGORIES]),
            pa.array(cu.consent["email"]),
            pa.array(cu.consent["sms"]),
            pa.array(cu.consent["push"]),
            *[pa.array(cu.multipliers[:, k], pa.float64()) for k in range(len(OFFERS))],
        ],
        schema=_TRUTH_SCHEMAS["customers"],
    )


def _offer_effects_table(
    cu: _Customers,
    exposures: dict[str, np.ndarray],
    ids: pa.Array,
    customer_ids: pa.Array,
    world: _World,
) -> pa.Table:
    """Every exposure against every offer: the exact chance of buying within the window."""
    customer = exposures["customer"].astype(np.int64)
    p0 = exposures["p0"].astype(np.float64)
    active_days = exposures["active_days"].astype(np.int64)
    n_offers = len(OFFERS)
    p_offer = (
        1.0
        - (1.0 - np.minimum(p0[:, None] * cu.multipliers[customer], 1.0)) ** (active_days[:, None])
    )
    p_control = 1.0 - (1.0 - p0) ** active_days
    rows = np.repeat(np.arange(customer.size), n_offers)
    offer = np.tile(np.arange(n_offers), customer.size)
    campaign_ids = [c.campaign_id for c in world.campaigns]
    return pa.Table.from_arrays(
        [
            ids.take(pa.array(rows)),
            customer_ids.take(pa.array(customer[rows])),
            _labels(exposures["campaign"].astype(np.int64)[rows], campaign_ids),
            _labels(offer, [o.offer_id for o in OFFERS]),
            pa.array(exposures["offer"].astype(np.int64)[rows] == offer),
            pa.array(np.full(rows.size, OFFER_WINDOW_DAYS, dtype=np.int64)),
            pa.array(active_days[rows]),
            pa.array(p_offer.ravel(), pa.float64()),
            pa.array(p_control[rows], pa.float64()),
            pa.array(p_offer.ravel() - p_control[rows], pa.float64()),
        ],
        schema=_TRUTH_SCHEMAS["offer_effects"],
    )
