"""Time and peak memory of one feature snapshot of a large retailer: DuckDB against pandas.

A compact generator (below) writes a retailer in Kizuna's contracts as Parquet: by default
1,000,000 customers over 1,900 days with about 20 million orders, 30 million order lines,
20 million events and 4 million exposures. One snapshot at the day after the data ends
is then built twice from the same files, each in a fresh subprocess so its peak resident
memory (ru_maxrss) is its own:

* **DuckDB**: ``build_feature_files`` over ``Tables.from_folder`` (what ``kizuna features
  build`` runs), within the default ``KIZUNA_DUCKDB_MEMORY_LIMIT``;
* **pandas**: the same features written with plain pandas (read the columns, filter by the
  cutoff, ``groupby``), as a data scientist would without Kizuna.

Both write one Parquet file per view. The run fails unless the two agree, feature by
feature, on a random sample of customers. Times are medians over ``--repeat`` runs.

    .venv/bin/python benchmarks/features_build.py                        # 1M customers
    .venv/bin/python benchmarks/features_build.py --customers 100000 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from steps import median_of, run_worker

from kizuna.features import catalog
from kizuna.features.contracts import CONTRACTS
from kizuna.features.simulate import contract_schema

START = datetime(2019, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
CATEGORIES = ("grocery", "beauty", "pet", "books", "apparel", "home", "toys", "electronics")
OFFERS = ("off1", "off2", "off3", "off4")
# Event types and their shares of all events.
EVENT_MIX = {
    "session": 0.35,
    "page_view": 0.30,
    "email_open": 0.15,
    "email_click": 0.05,
    "push_open": 0.08,
    "support_ticket": 0.02,
    "complaint": 0.01,
    "review": 0.015,
    "nps_response": 0.015,
    "csat_response": 0.007,
    "unsubscribe": 0.003,
}


# --- the compact generator ----------------------------------------------------------------


def _ids(prefix: str, first: int, n: int, width: int) -> pa.Array:
    numbers = pc.cast(pa.array(np.arange(first, first + n)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def _moments(us: np.ndarray) -> pa.Array:
    micros = int(START.timestamp() * 1e6) + np.asarray(us).astype(np.int64)
    return pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _pick(rng: np.random.Generator, labels, n: int, p=None) -> pa.Array:
    return pa.array(np.asarray(labels, dtype=object)[rng.choice(len(labels), n, p=p)], pa.string())


def _masked(values: pa.Array, keep: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(keep), values, pa.scalar(None, values.type))


def generate(out: Path, customers: int, days: int, seed: int, chunk: int = 100_000) -> dict:
    """Write contract-shaped Parquet files for ``customers`` over ``days`` days under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    writers = {
        kind: pq.ParquetWriter(out / f"{kind}.parquet", contract_schema(c))
        for kind, c in CONTRACTS.items()
    }
    rows = dict.fromkeys(CONTRACTS, 0)
    writers["offers"].write_table(
        pa.table(
            {
                "offer_id": list(OFFERS),
                "kind": ["percent_discount", "amount_discount", "free_shipping", "gift"],
                "value": [10.0, 5.0, 0.0, 0.0],
                "cost": [0.5, 0.5, 3.0, 2.0],
                "channel": ["email", "email", "sms", "push"],
                "valid_from": _moments(np.zeros(4)),
                "valid_to": pa.nulls(4, pa.timestamp("us", tz="UTC")),
                "eligibility": pa.nulls(4, pa.string()),
            },
            schema=contract_schema(CONTRACTS["offers"]),
        )
    )
    rows["offers"] = 4
    span_us = days * DAY_US
    for first in range(0, customers, chunk):
        n = min(chunk, customers - first)
        rng = np.random.default_rng([seed, first])
        ids = np.asarray(_ids("c", first, n, 7), dtype=object)
        # Customers: some joined before the period, 5 % have no known signup date.
        signup_us = rng.uniform(-365, days - 30, n) * DAY_US
        active_from = np.clip(signup_us, 0, None)
        active_to = active_from + (span_us - active_from) * rng.uniform(0.3, 1.0, n)
        tables = {
            "customers": {
                "customer_id": pa.array(ids, pa.string()),
                "signup_at": _masked(_moments(signup_us), rng.random(n) > 0.05),
                "country": _masked(_pick(rng, ("DE", "FR", "NL", "ES"), n), rng.random(n) > 0.02),
                "loyalty_tier": _pick(rng, ("bronze", "silver", "gold", "platinum"), n),
                "consent_email": _masked(pa.array(rng.random(n) < 0.8), rng.random(n) > 0.05),
                "consent_sms": pa.array(rng.random(n) < 0.45),
                "consent_push": pa.array(rng.random(n) < 0.55),
                "consent_profiling": _masked(pa.array(rng.random(n) > 0.05), rng.random(n) < 0.3),
            }
        }
        # Orders: heterogeneous rates, 20 per customer on average, 4 % returns.
        per = rng.poisson(20 * rng.gamma(1.5, 1 / 1.5, n))
        who = np.repeat(np.arange(n), per)
        k = len(who)
        at_us = active_from[who] + rng.random(k) * (active_to - active_from)[who]
        returned = rng.random(k) < 0.04
        amount = np.round(rng.gamma(2.0, 25.0, k), 2)
        discounted = (rng.random(k) < 0.25) & ~returned
        order_ids = _ids("o", rows["orders"], k, 9)
        tables["orders"] = {
            "order_id": order_ids,
            "customer_id": pa.array(ids[who], pa.string()),
            "ordered_at": _moments(at_us),
            "amount": np.where(returned, -amount, amount),
            "discount_amount": np.where(discounted, np.round(amount * 0.15, 2), 0.0),
            "offer_id": _masked(_pick(rng, OFFERS, k), (rng.random(k) < 0.05) & ~returned),
            "channel": _pick(rng, ("web", "app", "store"), k),
            "is_return": pa.array(returned),
        }
        # Lines of sales: 1-3 (1.5 on average), mostly in the customer's main category.
        lines_per = np.where(returned, 0, 1 + rng.binomial(2, 0.25, k))
        line_order = np.repeat(np.arange(k), lines_per)
        m = len(line_order)
        main = rng.integers(0, len(CATEGORIES), n)[who][line_order]
        category = np.where(rng.random(m) < 0.6, main, rng.integers(0, len(CATEGORIES), m))
        starts = np.cumsum(lines_per) - lines_per
        tables["order_lines"] = {
            "order_id": order_ids.take(pa.array(line_order)),
            "line_number": np.arange(m) - starts[line_order] + 1,
            "product_id": _ids("p", 0, m, 5).take(pa.array(rng.integers(0, m, m) % 5000)),
            "category": pa.array(np.asarray(CATEGORIES, dtype=object)[category], pa.string()),
            "quantity": rng.integers(1, 4, m).astype(float),
            "unit_price": np.round(rng.gamma(2.0, 10.0, m), 2),
        }
        # Events: 20 per customer on average, in the customer's active span.
        per = rng.poisson(20 * rng.gamma(2.0, 0.5, n))
        who = np.repeat(np.arange(n), per)
        k = len(who)
        types = np.asarray(list(EVENT_MIX), dtype=object)[
            rng.choice(len(EVENT_MIX), k, p=list(EVENT_MIX.values()))
        ]
        value = np.full(k, np.nan)
        for kind, low, high in (
            ("page_view", 1, 10),
            ("nps_response", 0, 10),
            ("csat_response", 1, 5),
            ("review", 1, 5),
        ):
            hit = types == kind
            value[hit] = rng.integers(low, high + 1, hit.sum())
        channel = np.full(k, None, dtype=object)
        channel[np.isin(types, ("email_open", "email_click"))] = "email"
        channel[types == "push_open"] = "push"
        unsub = types == "unsubscribe"
        channel[unsub] = np.asarray(["email", "sms", "push"], dtype=object)[
            rng.integers(0, 3, unsub.sum())
        ]
        tables["events"] = {
            "event_id": _ids("e", rows["events"], k, 9),
            "customer_id": pa.array(ids[who], pa.string()),
            "occurred_at": _moments(
                active_from[who] + rng.random(k) * (active_to - active_from)[who]
            ),
            "type": pa.array(types, pa.string()),
            "value": pa.array(value, mask=np.isnan(value)),
            "channel": pa.array(channel, pa.string()),
        }
        # Exposures: 4 per customer on average, a fifth of them control.
        per = rng.poisson(4, n)
        who = np.repeat(np.arange(n), per)
        k = len(who)
        tables["exposures"] = {
            "exposure_id": _ids("x", rows["exposures"], k, 8),
            "customer_id": pa.array(ids[who], pa.string()),
            "offer_id": _masked(_pick(rng, OFFERS, k), rng.random(k) > 0.2),
            "sent_at": _moments(rng.random(k) * span_us),
            "channel": _pick(rng, ("email", "sms", "push"), k),
            "propensity": np.full(k, 0.2),
        }
        for kind, columns in tables.items():
            table = pa.table(columns, schema=contract_schema(CONTRACTS[kind]))
            writers[kind].write_table(table, row_group_size=len(table))
            rows[kind] += len(table)
    for writer in writers.values():
        writer.close()
    return rows


# --- the same features in plain pandas ------------------------------------------------------


# Where customers show activity, and the column that dates it.
ACTIVITY = (("orders", "ordered_at"), ("events", "occurred_at"), ("exposures", "sent_at"))


class _Snapshot:
    """Reads the contract files as of ``t``; helpers shared by the per-view functions."""

    def __init__(self, folder: Path, t: pd.Timestamp) -> None:
        self.folder, self.t = folder, t

    def ago(self, days: int) -> pd.Timestamp:
        return self.t - pd.Timedelta(days=days)

    def days_since(self, moments: pd.Series) -> pd.Series:
        return (self.t - moments) / pd.Timedelta(days=1)

    def read(self, kind: str, columns: list[str], at: str | None = None) -> pd.DataFrame:
        frame = pd.read_parquet(self.folder / f"{kind}.parquet", columns=columns)
        return frame[frame[at] <= self.t] if at else frame

    def orders(self, columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(sales, returns) at or before t."""
        orders = self.read("orders", [*columns, "ordered_at", "is_return"], "ordered_at")
        returned = orders["is_return"].fillna(False).astype(bool)
        return orders[~returned], orders[returned]

    def population(self) -> pd.Index:
        customers = self.read("customers", ["customer_id", "signup_at"])
        signed_up = customers[customers["signup_at"] <= self.t]
        active = [self.read(kind, ["customer_id", at], at)["customer_id"] for kind, at in ACTIVITY]
        ids = pd.concat([signed_up["customer_id"], *active]).unique()
        return pd.Index(ids, name="customer_id")


def _purchases(s: _Snapshot, population: pd.Index) -> pd.DataFrame:
    sales, returns = s.orders(["customer_id", "order_id", "amount", "discount_amount"])
    sales = sales.assign(discount_amount=sales["discount_amount"].fillna(0.0))
    by = sales.groupby("customer_id")
    p = pd.DataFrame(index=population)
    last_order_at = by["ordered_at"].max().reindex(population)
    p["days_since_last_order"] = s.days_since(last_order_at)
    p["last_order_epoch"] = (last_order_at - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    for d in catalog.PURCHASE_WINDOWS:
        recent = sales[sales["ordered_at"] > s.ago(d)].groupby("customer_id")
        p[f"order_count_{d}d"] = recent.size()
        p[f"spend_{d}d"] = recent["amount"].sum()
    p["order_count_lifetime"] = by.size()
    p["spend_lifetime"] = by["amount"].sum()
    p = p.fillna({c: 0 for c in p.columns if c.startswith(("order_count", "spend"))})
    customers = s.read("customers", ["customer_id", "signup_at"])
    signup = customers[customers["signup_at"] <= s.t].groupby("customer_id")["signup_at"].min()
    first_order = by["ordered_at"].min()
    joined = pd.concat([signup.reindex(population), first_order.reindex(population)], axis=1)
    p["tenure_days"] = s.days_since(joined.min(axis=1))
    p["days_since_first_order"] = s.days_since(first_order.reindex(population))
    p["avg_order_value"] = p["spend_lifetime"] / p["order_count_lifetime"].replace(0, np.nan)
    days = sales[["customer_id"]].assign(day=sales["ordered_at"].dt.floor("D")).drop_duplicates()
    p["purchase_days_lifetime"] = days.groupby("customer_id").size().reindex(population).fillna(0)
    days = days.sort_values(["customer_id", "day"])
    days["gap"] = days.groupby("customer_id")["day"].diff() / pd.Timedelta(days=1)
    gaps = days.dropna(subset=["gap"]).groupby("customer_id")["gap"]
    p["gap_mean_days"] = gaps.mean()
    p["gap_median_days"] = gaps.median()
    p["gap_std_days"] = gaps.std()
    p["last_gap_days"] = gaps.last()
    p["overdue_index"] = p["days_since_last_order"] / p["gap_median_days"]
    prior = sales[(sales["ordered_at"] > s.ago(180)) & (sales["ordered_at"] <= s.ago(90))]
    prior = prior.groupby("customer_id")["amount"].agg(["size", "sum"]).reindex(population)
    p["order_trend_90d"] = p["order_count_90d"] - prior["size"].fillna(0)
    p["spend_trend_90d"] = p["spend_90d"] - prior["sum"].fillna(0)
    discount = by["discount_amount"].sum().reindex(population)
    p["discount_share"] = (discount / (p["spend_lifetime"] + discount).replace(0, np.nan)).fillna(0)
    discounted = (sales["discount_amount"] > 0).groupby(sales["customer_id"]).sum()
    p["discounted_order_share"] = (
        discounted.reindex(population) / p["order_count_lifetime"].replace(0, np.nan)
    ).fillna(0)
    recent_returns = returns[returns["ordered_at"] > s.ago(365)].groupby("customer_id")["amount"]
    p["return_count_365d"] = recent_returns.size()
    p["return_amount_365d"] = -recent_returns.sum()
    p = p.fillna({"return_count_365d": 0, "return_amount_365d": 0.0})
    p["return_rate"] = (
        returns.groupby("customer_id").size().reindex(population)
        / p["order_count_lifetime"].replace(0, np.nan)
    ).fillna(0)
    lines = s.read("order_lines", ["order_id", "category", "quantity", "unit_price"])
    lines = lines.dropna(subset=["category"]).merge(
        sales[["order_id", "customer_id", "ordered_at"]], on="order_id"
    )
    lines["spend"] = lines["quantity"] * lines["unit_price"]
    cats = (
        lines.groupby(["customer_id", "category"])
        .agg(spend=("spend", "sum"), last_at=("ordered_at", "max"))
        .reset_index()
        .sort_values(["customer_id", "spend", "category"], ascending=[True, False, True])
    )
    cats["rank"] = cats.groupby("customer_id").cumcount() + 1
    total = cats.groupby("customer_id")["spend"].sum()
    recent = lines[lines["ordered_at"] > s.ago(365)]
    p["category_count_365d"] = recent.groupby("customer_id")["category"].nunique()
    p["category_count_365d"] = p["category_count_365d"].fillna(0)
    top, second = (cats[cats["rank"] == r].set_index("customer_id") for r in (1, 2))
    p["top_category"] = top["category"]
    p["top_category_share"] = (top["spend"] / total.replace(0, np.nan)).reindex(population)
    p["top_category_share"] = p["top_category_share"].fillna(0)
    p["days_since_top_category"] = s.days_since(top["last_at"].reindex(population))
    p["second_category"] = second["category"]
    p["days_since_second_category"] = s.days_since(second["last_at"].reindex(population))
    return p


def _engagement_and_service(s: _Snapshot, population: pd.Index) -> tuple[pd.DataFrame, ...]:
    events = s.read(
        "events",
        ["customer_id", "event_id", "occurred_at", "type", "value", "channel"],
        "occurred_at",
    )
    e = pd.DataFrame(index=population)
    for stem, (event_type, _) in catalog.ENGAGEMENT_COUNTS.items():
        of_type = events[events["type"] == event_type]
        for d in catalog.ENGAGEMENT_WINDOWS:
            recent = of_type[of_type["occurred_at"] > s.ago(d)]
            if event_type == "page_view":
                e[f"{stem}_{d}d"] = recent["value"].fillna(1).groupby(recent["customer_id"]).sum()
            else:
                e[f"{stem}_{d}d"] = recent.groupby("customer_id").size()
    e = e.fillna(0)
    for stem, event_type in (("sessions", "session"), ("email_opens", "email_open")):
        of_type = events[events["type"] == event_type]
        window = (of_type["occurred_at"] > s.ago(60)) & (of_type["occurred_at"] <= s.ago(30))
        before = of_type[window].groupby("customer_id").size().reindex(population).fillna(0)
        e[f"{stem}_trend_30d"] = e[f"{stem}_30d"] - before
    engaged = events[events["type"].isin(catalog.ENGAGEMENT_TYPES)]
    e["days_since_last_engagement"] = s.days_since(
        engaged.groupby("customer_id")["occurred_at"].max().reindex(population)
    )
    unsubscribes = events[events["type"] == "unsubscribe"]
    e["unsubscribes_lifetime"] = unsubscribes.groupby("customer_id").size()
    e["unsubscribes_lifetime"] = e["unsubscribes_lifetime"].fillna(0)
    for ch in catalog.CONSENT_CHANNELS:
        hit = unsubscribes["channel"].isna() | (unsubscribes["channel"] == ch)
        flag = hit.groupby(unsubscribes["customer_id"]).any()
        e[f"unsubscribed_{ch}"] = flag.reindex(population, fill_value=False)

    v = pd.DataFrame(index=population)
    for stem, event_type in (("support_tickets", "support_ticket"), ("complaints", "complaint")):
        of_type = events[events["type"] == event_type]
        for d in catalog.SERVICE_WINDOWS:
            recent = of_type[of_type["occurred_at"] > s.ago(d)]
            v[f"{stem}_{d}d"] = recent.groupby("customer_id").size()
    v = v.fillna(0)
    for stem, event_type in (("nps", "nps_response"), ("csat", "csat_response")):
        answers = events[(events["type"] == event_type) & events["value"].notna()]
        last = answers.sort_values(["occurred_at", "event_id"]).groupby("customer_id").last()
        v[f"last_{stem}"] = last["value"]
        v[f"days_since_last_{stem}"] = s.days_since(last["occurred_at"].reindex(population))
    reviews = events[(events["type"] == "review") & (events["occurred_at"] > s.ago(365))]
    v["reviews_365d"] = reviews.groupby("customer_id").size()
    v["reviews_365d"] = v["reviews_365d"].fillna(0)
    v["avg_review_365d"] = reviews.groupby("customer_id")["value"].mean()
    return e, v


def _offers(s: _Snapshot, population: pd.Index) -> pd.DataFrame:
    exposures = s.read("exposures", ["customer_id", "offer_id", "sent_at"], "sent_at")
    x = pd.DataFrame(index=population)
    offered = exposures[exposures["offer_id"].notna()]
    for d in catalog.OFFER_WINDOWS:
        x[f"exposures_{d}d"] = offered[offered["sent_at"] > s.ago(d)].groupby("customer_id").size()
    control = exposures[exposures["offer_id"].isna() & (exposures["sent_at"] > s.ago(365))]
    x["control_assignments_365d"] = control.groupby("customer_id").size()
    sales, _ = s.orders(["customer_id", "offer_id"])
    redeemed = sales[sales["offer_id"].notna() & (sales["ordered_at"] > s.ago(365))]
    x["redemptions_365d"] = redeemed.groupby("customer_id").size()
    x = x.fillna(0)
    x["offer_response_rate_365d"] = (
        x["redemptions_365d"] / x["exposures_365d"].replace(0, np.nan)
    ).fillna(0)
    x["days_since_last_contact"] = s.days_since(
        offered.groupby("customer_id")["sent_at"].max().reindex(population)
    )
    return x


def _profile(
    s: _Snapshot, population: pd.Index, purchases: pd.DataFrame, engagement: pd.DataFrame
) -> pd.DataFrame:
    columns = ["customer_id", "loyalty_tier", "country"]
    columns += [f"consent_{ch}" for ch in (*catalog.CONSENT_CHANNELS, "profiling")]
    customers = s.read("customers", columns).drop_duplicates("customer_id")
    c = customers.set_index("customer_id").reindex(population)
    r = pd.DataFrame(index=population)
    r["loyalty_tier"], r["country"] = c["loyalty_tier"], c["country"]
    for ch in catalog.CONSENT_CHANNELS:
        given = c[f"consent_{ch}"].astype("boolean").fillna(False).astype(bool)
        r[f"consent_{ch}"] = given & ~engagement[f"unsubscribed_{ch}"]
    r["consent_profiling"] = c["consent_profiling"].astype("boolean").fillna(True).astype(bool)
    buyers = purchases[purchases["order_count_lifetime"] > 0]
    scores = pd.DataFrame(
        {
            # The most recent buyer ranks highest: rank recency by -days since the last order.
            "r": (-buyers["days_since_last_order"]).rank(method="min"),
            "f": buyers["order_count_lifetime"].rank(method="min"),
            "m": buyers["spend_lifetime"].rank(method="min"),
        }
    )
    scores = (1 + np.floor(5 * (scores - 1) / len(buyers))).reindex(population)
    r["rfm_recency_score"] = scores["r"].fillna(0)
    r["rfm_frequency_score"] = scores["f"].fillna(0)
    r["rfm_monetary_score"] = scores["m"].fillna(0)
    fm = (scores["f"] + scores["m"]) // 2
    segment = pd.Series(catalog.NO_PURCHASES, index=population, dtype=object)
    for name, (rs, fms) in catalog.RFM_SEGMENTS.items():
        segment[scores["r"].isin(rs) & fm.isin(fms)] = name
    r["rfm_segment"] = segment
    return r


def pandas_features(folder: Path, cutoff: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every catalog feature at ``cutoff`` with pandas groupby, from the contract files.

    One view at a time, so only one view's inputs are in memory at once.
    """
    s = _Snapshot(folder, cutoff)
    population = s.population()
    purchases = _purchases(s, population)
    engagement, service = _engagement_and_service(s, population)
    offers = _offers(s, population)
    profile = _profile(s, population, purchases, engagement)
    out = {}
    types = {"int": "int64", "float": "float64", "string": "object", "bool": "bool"}
    frames = (purchases, engagement, service, offers, profile)
    for view, frame in zip(catalog.VIEWS, frames, strict=True):
        specs = catalog.by_view(view)
        frame = frame[[f.name for f in specs]].astype({f.name: types[f.type] for f in specs})
        frame.insert(0, "event_timestamp", cutoff)
        out[view] = frame.reset_index()
    return out


# --- steps, each in its own process ---------------------------------------------------------


def run_step(step: str, args: dict) -> dict:
    """Run one step here (in the worker process) and return its figures."""
    started = time.perf_counter()
    out: dict = {}
    if step == "generate":
        out["rows"] = generate(Path(args["out"]), args["customers"], args["days"], args["seed"])
    elif step == "duckdb":
        from kizuna.features.compute import Tables, build_feature_files, default_cutoff
        from kizuna.settings import Settings

        tables = Tables.from_folder(Path(args["folder"]))
        cutoff = default_cutoff(tables)
        settings = Settings(home=Path(args["home"]))
        paths = build_feature_files(settings, [cutoff], tables)
        out["cutoff"] = cutoff.isoformat()
        out["paths"] = {view: str(path) for view, path in paths.items()}
        out["memory_limit"] = settings.duckdb_memory_limit
    elif step == "pandas":
        frames = pandas_features(Path(args["folder"]), pd.Timestamp(args["cutoff"]))
        target = Path(args["home"])
        target.mkdir(parents=True, exist_ok=True)
        out["paths"] = {}
        for view, frame in frames.items():
            path = target / f"{view}.parquet"
            frame.to_parquet(path, index=False)
            out["paths"][view] = str(path)
    out["seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def step(name: str, **args) -> dict:
    return run_worker([__file__, "--worker"], name, args)


def compare(duck: dict[str, str], panda: dict[str, str], sample: int, seed: int) -> int:
    """Check that both builds agree on every feature of ``sample`` random customers."""
    import duckdb

    con = duckdb.connect()
    rows = 0
    for view in catalog.VIEWS:
        n_duck, n_pandas = (
            con.execute(f"SELECT count(*) FROM read_parquet('{p[view]}')").fetchone()[0]
            for p in (duck, panda)
        )
        assert n_duck == n_pandas, f"{view}: DuckDB has {n_duck} customers, pandas {n_pandas}"
        picked = (
            f"SELECT * FROM read_parquet('{{}}') WHERE hash(customer_id, {seed}) % "
            f"{max(n_duck // sample, 1)} = 0 ORDER BY customer_id"
        )
        a = con.execute(picked.format(duck[view])).df()
        b = con.execute(picked.format(panda[view])).df()
        assert list(a["customer_id"]) == list(b["customer_id"]), view
        for f in catalog.by_view(view):
            x, y = a[f.name], b[f.name]
            if f.type == "float":
                same = np.isclose(x, y, rtol=1e-9, atol=1e-6, equal_nan=True)
            else:
                same = (x == y) | (x.isna() & y.isna())
            differing = pd.concat([a["customer_id"], x, y], axis=1)[~same]
            assert same.all(), f"{view}.{f.name} differs:\n{differing.head()}"
        rows = max(rows, len(a))
    return rows


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(run_step(sys.argv[2], json.loads(sys.argv[3]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=1_900)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sample", type=int, default=2_000, help="customers compared")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kizuna-features-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "retailer"
    gen = step("generate", out=str(data), customers=args.customers, days=args.days, seed=args.seed)
    ducks, pandas_runs = [], []
    for i in range(args.repeat):
        ducks.append(step("duckdb", folder=str(data), home=str(work / f"home-{i}")))
        pandas_runs.append(
            step("pandas", folder=str(data), cutoff=ducks[0]["cutoff"], home=str(work / f"pd-{i}"))
        )
    compared = compare(ducks[-1]["paths"], pandas_runs[-1]["paths"], args.sample, args.seed)
    duck_s, pandas_s = median_of(ducks, "seconds"), median_of(pandas_runs, "seconds")
    duck_mb, pandas_mb = median_of(ducks, "peak_rss_mb"), median_of(pandas_runs, "peak_rss_mb")
    n_features = len(catalog.FEATURES)
    rows = gen["rows"]
    table = [
        "| step | time (median) | peak memory | notes |",
        "|---|---|---|---|",
        f"| generate {args.customers:,} customers x {args.days:,} d | {gen['seconds']:.1f} s | "
        f"{gen['peak_rss_mb']:,.0f} MB | "
        + ", ".join(f"{k} {v:,}" for k, v in rows.items())
        + " |",
        f"| DuckDB: `build_feature_files`, 1 cutoff ({ducks[0]['cutoff'][:10]}), "
        f"{n_features} features in {len(catalog.VIEWS)} views | {duck_s:.1f} s | "
        f"{duck_mb:,.0f} MB | memory limit {ducks[0]['memory_limit']}, straight to Parquet |",
        f"| pandas groupby, the same features and files | {pandas_s:.1f} s | {pandas_mb:,.0f} MB "
        f"| read columns, filter, groupby, write Parquet |",
        f"| DuckDB vs pandas | {pandas_s / duck_s:.1f}x faster | {pandas_mb / duck_mb:.1f}x less "
        f"| agree on all {n_features} features for {compared:,} sampled customers per view |",
    ]
    print("\n".join(table))
    print(f"\ncommand: .venv/bin/python benchmarks/features_build.py {' '.join(sys.argv[1:])}")
    print("online read latency per FeatureService: benchmarks/online_features.py")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
