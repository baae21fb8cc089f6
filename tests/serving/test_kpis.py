"""KPIs: DuckDB results against independent pandas computations on the simulated lake,
exact answers on tiny hand-built lakes, the cache, the route and the CLI."""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kizuna.features.compute import build_feature_files
from kizuna.features.lake import Lake
from kizuna.serving import kpis as kpis_module
from kizuna.serving.kpis import KpiCache, KpiError, Kpis, compute_kpis
from kizuna.settings import Settings
from tests.world import ingest_csvs, run_cli

DAY = pd.Timedelta(days=1)


# -- pandas references --------------------------------------------------------------------
def _buys(orders: pd.DataFrame) -> pd.DataFrame:
    return orders[~orders["is_return"].fillna(False).astype(bool)]


def _active_set(orders: pd.DataFrame, at: pd.Timestamp, days: int) -> set[str]:
    b = _buys(orders)
    inside = (b["ordered_at"] > at - days * DAY) & (b["ordered_at"] <= at)
    return set(b.loc[inside, "customer_id"])


def _month(stamps: pd.Series) -> pd.Series:
    return stamps.dt.tz_convert("UTC").dt.strftime("%Y-%m")


def _repeat_rate(orders: pd.DataFrame, at: pd.Timestamp) -> float:
    b = _buys(orders)
    counts = b[b["ordered_at"] <= at].groupby("customer_id").size()
    return float((counts >= 2).mean())


def _top_share(orders: pd.DataFrame, at: pd.Timestamp) -> float:
    window = orders[(orders["ordered_at"] > at - pd.DateOffset(months=12))]
    window = window[window["ordered_at"] <= at]
    spend = window.groupby("customer_id")["amount"].sum()
    spend = spend[spend > 0].sort_values(ascending=False)
    top = math.ceil(0.2 * len(spend))
    return float(spend.iloc[:top].sum() / spend.sum())


def _month_start(label: str) -> pd.Timestamp:
    return pd.Timestamp(f"{label}-01", tz="UTC")


# -- the simulated retailer ---------------------------------------------------------------
@pytest.fixture(scope="module")
def world(sim_world):
    lake = Lake(sim_world.settings)
    frames = {k: lake.read(k) for k in ("orders", "events", "customers")}
    return sim_world.settings, frames, compute_kpis(sim_world.settings)


def test_as_of_is_the_latest_order_and_months_are_complete_calendar_months(world) -> None:
    settings, frames, k = world
    assert pd.Timestamp(k.as_of) == frames["orders"]["ordered_at"].max()
    months = [m.month for m in k.revenue_by_month]
    assert months[-1] == k.last_complete_month == "2025-11"  # the data ends 2025-12-20
    assert len(months) == 23  # 2024-01 .. 2025-11: every complete month, at most 24
    assert [m.month for m in k.churn_by_month] == months == [m.month for m in k.nps_by_month]
    assert k.lake_version == Lake(settings).manifest().version


def test_active_customers_match_pandas(world) -> None:
    _, frames, k = world
    orders, as_of = frames["orders"], pd.Timestamp(k.as_of)
    kpi = k.headline.active_customers
    assert kpi.value == len(_active_set(orders, as_of, 365))
    month_ago = as_of - pd.DateOffset(months=1)
    assert kpi.previous == len(_active_set(orders, month_ago, 365))
    assert kpi.change == kpi.value - kpi.previous
    assert (kpi.period, kpi.previous_period) == ("2025-12-20", "2025-11-20")
    assert "365 days" in kpi.definition


def test_churn_and_retention_per_month_match_pandas(world) -> None:
    _, frames, k = world
    orders = frames["orders"]
    for month in k.churn_by_month:
        start = _month_start(month.month)
        end = start + pd.DateOffset(months=1)
        base = _active_set(orders, start, 365)
        lost = base - _active_set(orders, end, 365)
        assert (month.active_at_start, month.churned) == (len(base), len(lost)), month.month
        if base:
            assert month.churn_rate == pytest.approx(len(lost) / len(base))
            assert month.retention_rate == pytest.approx(1 - len(lost) / len(base))
        else:
            assert month.churn_rate is None
    last, before = k.churn_by_month[-1], k.churn_by_month[-2]
    assert k.headline.churn_rate.value == pytest.approx(last.churn_rate)
    assert k.headline.churn_rate.previous == pytest.approx(before.churn_rate)
    assert k.headline.retention_rate.value == pytest.approx(1 - last.churn_rate)
    assert k.headline.churn_rate.period == "2025-11"


def test_cohort_grid_matches_pandas(world) -> None:
    _, frames, k = world
    b = _buys(frames["orders"]).assign(month=lambda f: _month(f["ordered_at"]))
    first = b.groupby("customer_id")["month"].min().rename("cohort")
    b = b.join(first, on="customer_id")
    months = pd.date_range("2024-12-01", "2025-11-01", freq="MS")
    assert [c.month for c in k.cohorts] == [f"{m:%Y-%m}" for m in months]
    for cohort in k.cohorts:
        members = b[b["cohort"] == cohort.month]
        size = members["customer_id"].nunique()
        assert cohort.customers == size
        start = _month_start(cohort.month)
        for i, share in enumerate(cohort.retention):
            month = (start + pd.DateOffset(months=i)).strftime("%Y-%m")
            if month > k.last_complete_month:
                assert share is None, (cohort.month, i)
                continue
            buyers = members.loc[members["month"] == month, "customer_id"].nunique()
            assert share == pytest.approx(buyers / size), (cohort.month, i)
        assert cohort.retention[0] == 1.0 and len(cohort.retention) == 12


def test_repeat_rate_revenue_and_top_share_match_pandas(world) -> None:
    _, frames, k = world
    orders, as_of = frames["orders"], pd.Timestamp(k.as_of)
    month_ago = as_of - pd.DateOffset(months=1)
    h = k.headline
    assert h.repeat_purchase_rate.value == pytest.approx(_repeat_rate(orders, as_of))
    assert h.repeat_purchase_rate.previous == pytest.approx(_repeat_rate(orders, month_ago))
    assert h.top_customers_revenue_share.value == pytest.approx(_top_share(orders, as_of))
    assert h.top_customers_revenue_share.previous == pytest.approx(_top_share(orders, month_ago))
    by_month = orders.assign(month=_month(orders["ordered_at"])).groupby("month")
    revenue = by_month["amount"].sum()
    buys = _buys(orders).assign(month=lambda f: _month(f["ordered_at"])).groupby("month")
    for month in k.revenue_by_month:
        assert month.revenue == pytest.approx(revenue[month.month], rel=1e-9)
        assert month.orders == buys.size()[month.month]
        assert month.buyers == buys["customer_id"].nunique()[month.month]
    returns = orders[orders["is_return"]].assign(month=lambda f: _month(f["ordered_at"]))
    refunds = -returns.groupby("month")["amount"].sum()
    assert k.revenue_by_month[-1].refunds == pytest.approx(refunds[k.last_complete_month])
    assert h.revenue.value == pytest.approx(revenue["2025-11"])
    assert h.revenue.previous == pytest.approx(revenue["2025-10"])


def test_nps_and_csat_per_month_match_pandas(world) -> None:
    _, frames, k = world
    events = frames["events"].assign(month=lambda f: _month(f["occurred_at"]))
    nps = events[events["type"] == "nps_response"].groupby("month")["value"]
    csat = events[events["type"] == "csat_response"].groupby("month")["value"]
    answered = 0
    for month in k.nps_by_month:
        values = nps.get_group(month.month) if month.month in nps.groups else pd.Series([])
        promoters, detractors = int((values >= 9).sum()), int((values <= 6).sum())
        assert (month.answers, month.promoters, month.detractors) == (
            len(values),
            promoters,
            detractors,
        )
        assert month.passives == len(values) - promoters - detractors
        if len(values):
            answered += 1
            assert month.nps == pytest.approx(100 * (promoters - detractors) / len(values))
        else:
            assert month.nps is None
    assert answered >= 3  # the simulator surveys in waves
    for month in k.csat_by_month:
        values = csat.get_group(month.month)
        assert month.answers == len(values)
        assert month.csat == pytest.approx((values >= 4).mean())
        assert month.mean == pytest.approx(values.mean())


def _snapshot(settings: Settings) -> pd.DataFrame:
    path = settings.home_dir / "features" / "snapshots" / "customer_profile.parquet"
    return pd.read_parquet(path)


def test_tier_and_segment_sizes_compare_with_the_snapshot_a_month_before(world) -> None:
    settings, frames, k = world
    snap = _snapshot(settings)
    stamps = sorted(snap["event_timestamp"].unique())
    latest = stamps[-1]
    target = latest - pd.Timedelta(days=30)
    previous = min(stamps[:-1], key=lambda s: abs(s - target))
    assert pd.Timestamp(k.tiers.previous_at) == previous == pd.Timestamp(k.segments.previous_at)
    customers = frames["customers"]
    tiers_now = customers["loyalty_tier"].fillna("unknown").value_counts()
    old = snap[snap["event_timestamp"] == previous]
    tiers_then = old["loyalty_tier"].fillna("unknown").value_counts()
    rows = {r.name: r for r in k.tiers.rows}
    assert [r.name for r in k.tiers.rows] == ["bronze", "silver", "gold", "platinum"]
    for tier, n in tiers_now.items():
        assert (rows[tier].customers, rows[tier].previous) == (n, tiers_then.get(tier, 0))
        assert rows[tier].change == n - tiers_then.get(tier, 0)
    assert k.tiers.total == len(customers)
    # Without a score book the segments are the latest snapshot's, opt-outs left out.
    now = snap[(snap["event_timestamp"] == latest) & snap["consent_profiling"]]
    then = old[old["consent_profiling"]]
    sizes = {r.name: (r.customers, r.previous) for r in k.segments.rows}
    expected = {
        name: (int(n), int(then["rfm_segment"].value_counts().get(name, 0)))
        for name, n in now["rfm_segment"].value_counts().items()
    }
    assert sizes == expected
    assert k.segments.total == len(now) < len(snap[snap["event_timestamp"] == latest])
    assert "latest feature snapshot" in k.segments.note


def _score_table(settings: Settings) -> pd.DataFrame:
    """A score table as the book has it (synthetic scores), opt-outs with huge values."""
    snap = _snapshot(settings)
    snap = snap[snap["event_timestamp"] == snap["event_timestamp"].max()].reset_index()
    rng = np.random.default_rng(3)
    value = rng.lognormal(4, 1, len(snap))
    churn = rng.uniform(0, 1, len(snap))
    opted_out = ~snap["consent_profiling"].to_numpy()
    value[opted_out] = 1e9
    return pd.DataFrame(
        {
            "customer_id": snap["customer_id"],
            "features_at": snap["event_timestamp"],
            "rfm_segment": snap["rfm_segment"],
            "consent_profiling": snap["consent_profiling"],
            "churn_probability": churn,
            "value_predicted": value,
            "value_window_days": 120,
            "value_at_risk": churn * value,
        }
    )


def test_clv_distribution_and_value_at_risk_leave_out_profiling_opt_outs(world) -> None:
    settings, _, _ = world
    table = _score_table(settings)
    k = compute_kpis(settings, table)
    kept = table[table["consent_profiling"]]
    values = kept["value_predicted"]
    clv = k.clv
    assert clv.customers == len(kept) < len(table)
    assert clv.window_days == 120
    quantiles = {0.1: clv.p10, 0.25: clv.p25, 0.5: clv.p50, 0.75: clv.p75, 0.9: clv.p90}
    for q, got in quantiles.items():
        assert got == pytest.approx(values.quantile(q))
    assert clv.mean == pytest.approx(values.mean()) and clv.total == pytest.approx(values.sum())
    assert sum(b.customers for b in clv.bins) == len(kept)
    assert clv.bins[0].lower == pytest.approx(values.min())
    assert clv.bins[-1].upper == pytest.approx(values.max())
    # Equal widths up to the 99th percentile; the last bin reaches the maximum.
    width = (values.quantile(0.99) - values.min()) / len(clv.bins)
    for a, b in zip(clv.bins[:-1], clv.bins[1:], strict=True):
        assert a.upper == b.lower and a.upper - a.lower == pytest.approx(width)
    counts = np.histogram(values.clip(upper=values.quantile(0.99)), bins=len(clv.bins))[0]
    assert [b.customers for b in clv.bins] == list(counts)
    assert k.value_at_risk.total == pytest.approx(kept["value_at_risk"].sum())
    assert k.value_at_risk.share_of_value == pytest.approx(
        kept["value_at_risk"].sum() / values.sum()
    )
    assert k.headline.clv_median.value == pytest.approx(values.median())
    assert k.headline.value_at_risk.value == pytest.approx(kept["value_at_risk"].sum())
    assert k.segments.note is None  # from the table now
    assert k.segments.total == len(kept)


def test_score_kpis_say_why_they_are_missing(world) -> None:
    settings, _, k = world
    assert k.clv is None and k.value_at_risk is None
    assert k.headline.clv_median.value is None
    assert "no score book" in k.headline.clv_median.note
    table = _score_table(settings).drop(columns=["value_predicted", "value_at_risk"])
    partial = compute_kpis(settings, table)
    assert partial.clv is None and partial.headline.value_at_risk.value is None
    assert "needs the churn and value models" in partial.headline.value_at_risk.note


def test_every_kpi_has_a_definition_and_the_json_has_no_nan(world) -> None:
    _, _, k = world
    for kpi in k.headline.__dict__.values():
        assert kpi.definition and kpi.label and "{" not in kpi.definition
    text = k.model_dump_json()
    assert "NaN" not in text
    again = Kpis.model_validate_json(text)
    assert again.headline == k.headline


def test_sim_world_timing(world) -> None:
    settings, _, _ = world
    started = datetime.now(UTC)
    compute_kpis(settings, _score_table(settings))
    assert (datetime.now(UTC) - started).total_seconds() < 10


# -- tiny lakes with known answers --------------------------------------------------------
CUSTOMERS = """customer_id,signup_at,loyalty_tier,consent_profiling
A,2024-12-01,gold,true
B,2024-12-01,bronze,
C,2024-12-01,,true
D,2025-04-01,silver,false
"""
# A buys monthly; B once and returns part of it; C once; D once at the data's end.
ORDERS = """order_id,customer_id,ordered_at,amount,is_return
a1,A,2025-01-10T10:00:00Z,100,
a2,A,2025-02-10T10:00:00Z,100,
a3,A,2025-03-10T10:00:00Z,100,
b1,B,2025-01-20T10:00:00Z,50,
b2,B,2025-02-25T10:00:00Z,-5,true
c1,C,2025-02-05T10:00:00Z,20,
d1,D,2025-04-15T12:00:00Z,35,
"""
EVENTS = """event_id,customer_id,occurred_at,type,value
e1,A,2025-02-01,nps_response,10
e2,B,2025-02-02,nps_response,9
e3,C,2025-02-03,nps_response,8
e4,A,2025-02-04,nps_response,3
e5,A,2025-02-05,csat_response,5
e6,B,2025-02-06,csat_response,4
e7,C,2025-02-07,csat_response,2
e8,A,2025-02-08,session,
"""


@pytest.fixture
def tiny(tmp_path: Path, settings: Settings) -> Settings:
    ingest_csvs(tmp_path / "in", settings, customers=CUSTOMERS, orders=ORDERS, events=EVENTS)
    return settings


def test_tiny_lake_has_the_exact_answers(tiny: Settings) -> None:
    k = compute_kpis(tiny, active_days=30)
    assert k.as_of == datetime(2025, 4, 15, 12, tzinfo=UTC)
    assert k.last_complete_month == "2025-03"
    h = k.headline
    # Active in (2025-03-16 12:00, 2025-04-15 12:00]: D; a month earlier: A (B's row is a
    # return, which does not count).
    assert (h.active_customers.value, h.active_customers.previous) == (1, 1)
    # Feb: active at its start A, B; at its end A, C -> B churned. Mar: A, C -> C churned.
    churn = {m.month: (m.active_at_start, m.churned, m.churn_rate) for m in k.churn_by_month}
    assert churn == {"2025-01": (0, 0, None), "2025-02": (2, 1, 0.5), "2025-03": (2, 1, 0.5)}
    assert (h.churn_rate.value, h.churn_rate.previous, h.churn_rate.change) == (0.5, 0.5, 0.0)
    assert h.retention_rate.value == 0.5
    cohorts = {c.month: (c.customers, c.retention[:4]) for c in k.cohorts}
    assert cohorts == {
        "2025-01": (2, [1.0, 0.5, 0.5, None]),
        "2025-02": (1, [1.0, 0.0, None, None]),
    }
    assert h.repeat_purchase_rate.value == pytest.approx(1 / 4)  # A of A, B, C, D
    # Last 12 months, net: A 300, B 45, C 20, D 35; the top 20% (1 of 4) is A.
    assert h.top_customers_revenue_share.value == pytest.approx(300 / 400)
    revenue = {m.month: (m.revenue, m.refunds, m.orders, m.buyers) for m in k.revenue_by_month}
    assert revenue["2025-02"] == (115.0, 5.0, 2, 2)
    nps = k.nps_by_month[1]
    assert (nps.month, nps.promoters, nps.passives, nps.detractors) == ("2025-02", 2, 1, 1)
    assert nps.nps == pytest.approx(25.0)  # 50% promoters - 25% detractors
    assert k.nps_by_month[2].nps is None and h.nps.value is None
    assert h.nps.note == "nothing to measure in 2025-03"
    csat = k.csat_by_month[1]
    assert (csat.answers, csat.satisfied) == (3, 2)
    assert csat.csat == pytest.approx(2 / 3) and csat.mean == pytest.approx(11 / 3)
    tiers = {r.name: r.customers for r in k.tiers.rows}
    assert tiers == {"gold": 1, "silver": 1, "bronze": 1, "unknown": 1}
    assert k.tiers.previous_at is None and all(r.change is None for r in k.tiers.rows)
    assert "no earlier feature snapshot" in k.tiers.note
    assert k.segments is None and any("segments unavailable" in n for n in k.notes)


def test_as_of_moves_the_window(tiny: Settings) -> None:
    k = compute_kpis(tiny, active_days=30, as_of=datetime(2025, 3, 1))  # naive means UTC
    assert k.last_complete_month == "2025-02"
    assert k.headline.active_customers.value == 2  # A (Feb 10) and C (Feb 5)
    assert k.headline.repeat_purchase_rate.value == pytest.approx(1 / 3)  # A of A, B, C


def test_sizes_compare_with_the_snapshot_nearest_a_month_before(tiny: Settings) -> None:
    cutoffs = [datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC)]
    build_feature_files(tiny, [*cutoffs, datetime(2025, 4, 15, tzinfo=UTC)])
    k = compute_kpis(tiny)
    assert k.tiers.previous_at == cutoffs[1]  # nearest to 2025-03-16
    rows = {r.name: (r.customers, r.previous, r.change) for r in k.tiers.rows}
    # D signed up on 2025-04-01: not in the March snapshot.
    assert rows["silver"] == (1, 0, 1) and rows["gold"] == (1, 1, 0)
    # Segments of the latest snapshot (2025-04-15), D (profiling opt-out) left out.
    assert k.segments.at == datetime(2025, 4, 15, tzinfo=UTC)
    assert k.segments.total == 3 and k.segments.previous_at == cutoffs[1]


def test_an_empty_lake_is_an_error(settings: Settings) -> None:
    with pytest.raises(KpiError, match="no orders"):
        compute_kpis(settings)


# -- the cache ------------------------------------------------------------------------------
def _count_lake_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = kpis_module.lake_kpis

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(kpis_module, "lake_kpis", counted)
    return calls


def test_cache_recomputes_only_when_the_lake_or_the_table_changes(
    tiny: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_lake_computations(monkeypatch)
    cache = KpiCache()
    first = cache.get(tiny, active_days=30)
    assert cache.get(tiny, active_days=30) is first and len(calls) == 1
    table = pd.DataFrame(
        {
            "customer_id": ["A", "B"],
            "features_at": pd.Timestamp("2025-04-15", tz="UTC"),
            "rfm_segment": ["Champions", "Lost"],
            "consent_profiling": [True, None],
            "value_predicted": [10.0, 30.0],
            "churn_probability": [0.1, 0.5],
            "value_at_risk": [1.0, 15.0],
        }
    )
    with_table = cache.get(tiny, table, active_days=30)
    assert with_table is not first and len(calls) == 1  # the lake part is reused
    assert with_table.clv.p50 == 20.0 and with_table.value_at_risk.total == 16.0
    assert cache.get(tiny, table, active_days=30) is with_table
    other = cache.get(tiny, table, active_days=365)
    assert len(calls) == 2 and other.active_days == 365
    more = "order_id,customer_id,ordered_at,amount\nc2,C,2025-04-16T09:00:00Z,40\n"
    ingest_csvs(tmp_path / "more", tiny, orders=more)
    fresh = cache.get(tiny, table, active_days=30)
    assert len(calls) == 3 and fresh.lake_version == first.lake_version + 1
    assert fresh.headline.active_customers.value == 2  # C bought again


def test_cache_computes_once_for_concurrent_requests(
    tiny: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_lake_computations(monkeypatch)
    cache, answers = KpiCache(), []
    threads = [threading.Thread(target=lambda: answers.append(cache.get(tiny))) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(a is answers[0] for a in answers)


# -- the CLI and the route ------------------------------------------------------------------
def _same(a, b, where: str = "") -> None:
    """Equal JSON, floats to 1e-9 (DuckDB's parallel sums may differ in the last bits)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            if key not in ("computed_at", "seconds"):
                _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9), where
    else:
        assert a == b, where


def test_cli_json_is_the_kpis(world) -> None:
    settings, _, k = world
    done = run_cli(settings, "kpis", "--format", "json", "--no-scores")
    assert done.returncode == 0, done.stderr
    _same(json.loads(done.stdout), k.model_dump(mode="json"))


def test_cli_table_without_models_shows_the_score_kpis_as_unavailable(tiny: Settings) -> None:
    done = run_cli(tiny, "kpis", "--active-days", "30")
    assert done.returncode == 0, done.stderr
    assert "score KPIs unavailable" in done.stderr and "no champion model" in done.stderr
    assert "Active customers" in done.stdout and "Churn rate" in done.stdout
    assert "unavailable: no score book" in done.stdout
    assert "kizuna kpis --active-days 180" in run_cli(tiny, "kpis", "--help").stdout


def test_cli_on_an_empty_lake_says_what_to_do(settings: Settings) -> None:
    done = run_cli(settings, "kpis", "--no-scores")
    assert done.returncode == 2 and "ingest orders first" in done.stderr


@pytest.fixture
def api(tiny: Settings):
    """The KPI router alone in an app with a key store and no score book."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from kizuna.serving import errors
    from kizuna.serving.keys import KeyStore
    from kizuna.serving.routes.kpis import router

    app = FastAPI()
    errors.install(app)
    app.include_router(router)
    store = KeyStore(tiny)
    keys = {scope: store.create(f"test-{scope}", (scope,)) for scope in ("lists", "score")}
    app.state.keys, app.state.settings, app.state.book = store, tiny, None
    with TestClient(app) as client:
        yield client, keys


def test_route_answers_without_a_score_book_and_caches(api) -> None:
    client, keys = api
    lists = {"Authorization": f"Bearer {keys['lists']}"}
    response = client.get("/v1/kpis", params={"active_days": 30}, headers=lists)
    assert response.status_code == 200, response.text
    body = response.json()
    _same(body, compute_kpis(client.app.state.settings, active_days=30).model_dump(mode="json"))
    assert body["clv"] is None and "no score book" in body["headline"]["clv_median"]["note"]
    cache = client.app.state.kpis
    client.get("/v1/kpis", params={"active_days": 30}, headers=lists)
    assert cache.get(client.app.state.settings, active_days=30).seconds == body["seconds"]
    at = client.get("/v1/kpis", params={"as_of": "2025-03-01"}, headers=lists).json()
    assert at["last_complete_month"] == "2025-02"
    typo = client.get("/v1/kpis", params={"active_day": 30}, headers=lists)
    assert typo.status_code == 422 and typo.json()["field"] == "active_day"
    bad = client.get("/v1/kpis", params={"active_days": 0}, headers=lists)
    assert bad.status_code == 422 and bad.json()["field"] == "active_days"
    # Found by schemathesis: a year beyond pandas' timestamps was a 500.
    far = client.get("/v1/kpis", params={"as_of": "3149-04-04T16:27:23-07:51"}, headers=lists)
    assert far.status_code == 422 and far.json()["field"] == "as_of", far.text
    assert "from 1900 to 2199" in far.json()["detail"]
    score = {"Authorization": f"Bearer {keys['score']}"}
    assert client.get("/v1/kpis", headers=score).status_code == 403
    assert client.get("/v1/kpis").status_code == 401


def test_route_on_an_empty_lake_is_a_503(api, tmp_path: Path) -> None:
    client, keys = api
    client.app.state.settings = Settings(home=tmp_path / "empty", mlruns=tmp_path / "m")
    response = client.get("/v1/kpis", headers={"Authorization": f"Bearer {keys['lists']}"})
    assert response.status_code == 503 and "ingest orders first" in response.json()["detail"]


def test_route_answers_the_kpis_with_the_score_book(server) -> None:
    with server.client("lists") as c:
        response = c.get("/v1/kpis")
        shorter = c.get("/v1/kpis", params={"active_days": 30}).json()
        typo = c.get("/v1/kpis", params={"active_day": 30})
    assert response.status_code == 200, response.text
    body = response.json()
    # Events other tests pushed changed the lake: the default figures follow it behind the
    # requests (the previous answer is served while the new one is computed).
    version = Lake(server.settings).manifest().version
    deadline = time.monotonic() + 60
    while body["lake_version"] != version and time.monotonic() < deadline:
        time.sleep(0.5)
        with server.client("lists") as c:
            body = c.get("/v1/kpis").json()
    assert body["lake_version"] == version
    expected = compute_kpis(server.settings).model_dump(mode="json")
    lake_parts = ["churn_by_month", "cohorts", "revenue_by_month", "nps_by_month", "tiers"]
    for key in ["as_of", "lake_version", "csat_by_month", *lake_parts]:
        _same(body[key], expected[key], key)
    _same(body["headline"]["active_customers"], expected["headline"]["active_customers"])
    # Four champions: the score KPIs are there.
    clv = body["clv"]
    assert clv["customers"] > 1_000 and clv["p10"] <= clv["p50"] <= clv["p90"]
    assert body["value_at_risk"]["total"] > 0 and body["segments"]["note"] is None
    assert shorter["active_days"] == 30
    active = body["headline"]["active_customers"]["value"]
    assert shorter["headline"]["active_customers"]["value"] < active
    assert typo.status_code == 422 and typo.json()["field"] == "active_day"
    with server.client("score") as c:
        assert c.get("/v1/kpis").status_code == 403
    with server.client(None) as c:
        assert c.get("/v1/kpis").status_code == 401
