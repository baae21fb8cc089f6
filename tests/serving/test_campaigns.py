"""The campaign planner: budget, optimality against an exact solver, rules, holdout, log."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scipy.optimize import Bounds, LinearConstraint, milp

from kizuna.serving import errors
from kizuna.serving.campaigns import (
    BLOCKS,
    CSV_COLUMNS,
    CampaignError,
    campaigns_dir,
    commit_plan,
    plan_campaign,
    to_csv,
)
from kizuna.serving.decisions import NO_OFFER, DecisionLog, Offer, Policy
from kizuna.serving.keys import KeyStore
from kizuna.serving.knapsack import assign_offers
from kizuna.serving.routes import campaigns as route
from kizuna.serving.scoring import Champions

AT = datetime(2024, 6, 1, tzinfo=UTC)
POLICY = Policy(0.3, {"email": 0.01, "sms": 0.05, "push": 0.005}, 0.0, 2, 14)


def offer(offer_id: str, value: float = 10, cost: float = 0.5, **changes) -> Offer:
    fields = {
        "offer_id": offer_id,
        "kind": "percent_discount",
        "value": value,
        "cost": cost,
        "channel": "email",
        "valid_from": datetime(2024, 1, 1, tzinfo=UTC),
        "valid_to": None,
        "eligibility": {},
    }
    return Offer(**{**fields, **changes})


def catalog_of(*offers: Offer) -> dict[str, Offer]:
    return {o.offer_id: o for o in offers}


CATALOG = catalog_of(offer("pct10", 10), offer("pct20", 20), offer("pct30", 30, 1.0))


def audience(n: int, catalog: dict[str, Offer], seed: int = 0, **columns) -> pd.DataFrame:
    """``n`` score-table rows, everyone consenting, uplifts mostly worth sending."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "churn_probability": rng.random(n),
            "risk_band": rng.choice(["low", "medium", "high"], n),
            "consent_profiling": True,
            "consent_email": True,
            "consent_sms": True,
            "consent_push": True,
            "profile_avg_order_value": rng.uniform(20, 120, n),
            "profile_order_count_lifetime": rng.integers(0, 8, n),
            "profile_loyalty_tier": rng.choice(["bronze", "gold"], n),
            "profile_country": "DE",
            "profile_rfm_segment": rng.choice(["Loyal", "At risk"], n),
        }
    )
    for k, offer_id in enumerate(catalog):
        frame[f"uplift_{offer_id}"] = rng.uniform(-0.02, 0.1 + 0.05 * k, n)
        frame[f"p_buy_{offer_id}"] = rng.uniform(0.05, 0.4, n)
    for name, values in columns.items():
        frame[name] = values
    return frame


def plan(frame, tmp_path, catalog=CATALOG, budget=50.0, **options):
    options = {"channel": "email", "holdout_share": 0.0, "seed": 1, "at": AT, **options}
    history = options.pop("history", None) or DecisionLog(tmp_path / "log")
    return plan_campaign(frame, catalog, POLICY, history, budget=budget, **options)


def assigned(p) -> pd.DataFrame:
    return p.rows[p.rows["offer_id"].notna()]


def exact_optimum(cost: np.ndarray, profit: np.ndarray, options: np.ndarray, budget: float):
    """The multiple-choice knapsack's optimum by scipy's MILP solver."""
    rows, cols = np.nonzero(options & (profit > 0))
    if not len(rows):
        return 0.0
    n = len(cost)
    one_each = np.zeros((n, len(rows)))
    one_each[rows, np.arange(len(rows))] = 1
    result = milp(
        -profit[rows, cols],
        integrality=np.ones(len(rows)),
        bounds=Bounds(0, 1),
        constraints=[
            LinearConstraint(one_each, 0, 1),
            LinearConstraint(cost[rows, cols][None, :], 0, budget),
        ],
    )
    assert result.success
    return -result.fun


def test_the_greedy_is_feasible_and_within_one_option_of_the_exact_optimum() -> None:
    rng = np.random.default_rng(3)
    sizes = [(rng.integers(1, 14), rng.integers(1, 5)) for _ in range(100)] + [(300, 6)] * 3
    exact = 0
    for n, k in sizes:
        cost = rng.uniform(0.0, 5.0, (n, k))
        profit = rng.normal(1.0, 2.0, (n, k))
        options = rng.random((n, k)) < 0.8
        budget = rng.uniform(0, cost.sum() / 2)
        choice = assign_offers(cost, profit, options, budget)
        rows = np.flatnonzero(choice >= 0)
        assert len(choice) == n and ((choice >= -1) & (choice < k)).all()
        assert options[rows, choice[rows]].all() and (profit[rows, choice[rows]] > 0).all()
        assert cost[rows, choice[rows]].sum() <= budget + 1e-9
        got, best = profit[rows, choice[rows]].sum(), exact_optimum(cost, profit, options, budget)
        assert got <= best + 1e-6
        assert got >= best - profit[options].max(initial=0) - 1e-6
        exact += got >= best - 1e-6
    assert exact >= 0.8 * len(sizes)  # mostly the optimum itself, not merely within one option


def test_never_over_budget_and_at_most_one_offer_per_customer(tmp_path) -> None:
    frame = audience(300, CATALOG, seed=2)
    history = DecisionLog(tmp_path / "log")
    for budget in np.random.default_rng(4).uniform(0, 400, 40):
        p = plan(frame, tmp_path, budget=budget, history=history, holdout_share=0.2)
        (optimised, *_) = p.comparisons
        assert optimised.strategy == "plan" and optimised.expected_cost <= budget + 1e-9
        assert p.spent <= optimised.expected_cost + 1e-9
        assert p.rows["customer_id"].is_unique and len(p.rows) == len(frame)
        assert set(p.rows["action"]) <= {NO_OFFER, *CATALOG}
        assert (assigned(p)["expected_profit"] > 0).all()


def test_a_zero_budget_assigns_nothing(tmp_path) -> None:
    p = plan(audience(50, CATALOG), tmp_path, budget=0.0)
    assert p.counts.assigned == 0 and p.spent == 0 and p.counts.eligible > 0
    assert (p.rows["action"] == NO_OFFER).all() and (p.rows["propensity"] == 1).all()
    assert p.counts.left_out_by_budget == p.counts.eligible


def test_the_plan_beats_both_simple_strategies_on_the_same_budget(tmp_path) -> None:
    for seed in range(6):
        frame = audience(200, CATALOG, seed=seed)
        for budget in (5.0, 40.0, 150.0):
            mine, single, high = plan(frame, tmp_path, budget=budget, seed=seed).comparisons
            assert (single.strategy, high.strategy) == ("best_single_offer", "high_risk")
            for other in (single, high):  # no offer: none fits the budget
                assert other.offer_id in CATALOG or other.customers == 0
            for other in (single, high):
                assert other.expected_cost <= budget + 1e-9
                assert mine.expected_profit >= other.expected_profit - 1e-9
    # The high-risk strategy reaches only the high band.
    frame = audience(100, CATALOG, risk_band=["high"] * 10 + ["low"] * 90)
    *_, high = plan(frame, tmp_path, budget=1e6).comparisons
    assert high.customers == 10


def test_consent_and_profiling_opt_outs_are_never_assigned(tmp_path) -> None:
    consent = [False, None, True, True] * 25
    profiling = [True, True, False, None] * 25
    frame = audience(100, CATALOG, consent_email=consent, consent_profiling=profiling)
    p = plan(frame, tmp_path, budget=1e6)
    blocked = frame.loc[frame.index % 4 != 3, "customer_id"]
    assert not set(assigned(p)["customer_id"]) & set(blocked)
    assert p.counts.blocked["consent"] == 75
    reasons = p.rows.set_index("customer_id")["reason"]
    assert reasons["C00000"] == "no consent for email"  # unknown consent counts as none
    assert reasons["C00001"] == "no consent for email"
    assert "opted out of profiling" in reasons["C00002"]
    # Profiling consent unknown counts as given (as in the score book).
    assert p.counts.assigned + p.counts.blocked["no_positive_offer"] == 25


def test_eligibility_rules_hold(tmp_path) -> None:
    catalog = catalog_of(
        offer("loyal_only", 10, eligibility={"segments": ["Loyal"]}),
        offer("regulars", 20, eligibility={"min_orders": 3}),
    )
    frame = audience(400, catalog, seed=5)
    p = plan(frame, tmp_path, catalog=catalog, budget=1e6)
    got = assigned(p).merge(frame, on="customer_id")
    assert (got.loc[got["offer_id"] == "loyal_only", "profile_rfm_segment"] == "Loyal").all()
    assert (got.loc[got["offer_id"] == "regulars", "profile_order_count_lifetime"] >= 3).all()
    neither = (frame["profile_rfm_segment"] != "Loyal") & (
        frame["profile_order_count_lifetime"] < 3
    )
    assert p.counts.blocked["eligibility"] == neither.sum() > 0
    assert p.counts.assigned > 0


def contact(history: DecisionLog, customer_id: str, action: str, days_ago: float, channel="email"):
    history.record(
        {
            "decision_id": str(uuid.uuid4()),
            "customer_id": customer_id,
            "channel": channel,
            "decided_at": (AT - timedelta(days=days_ago)).isoformat(),
            "action": action,
        }
    )


def test_weekly_cap_and_cooldown_from_the_decision_log(tmp_path) -> None:
    catalog = catalog_of(offer("pct10", 10))
    frame = audience(5, catalog, uplift_pct10=0.3, p_buy_pct10=0.2)
    history = DecisionLog(tmp_path / "log")
    contact(history, "C00000", "other", 1)  # two e-mails this week: capped
    contact(history, "C00000", "other", 6)
    contact(history, "C00001", "pct10", 5, channel="sms")  # pct10 5 days ago: cooling down
    contact(history, "C00002", "pct10", 20)  # 20 days ago: past the cooldown
    contact(history, "C00003", "x", 1, channel="sms")  # the other channels' contacts
    contact(history, "C00003", "y", 2, channel="sms")  # do not count for the e-mail cap
    contact(history, "C00004", "z", 8)  # older than a week
    contact(history, "C00004", "z", 3)
    p = plan(frame, tmp_path, catalog=catalog, budget=1e6, history=history)
    by = p.rows.set_index("customer_id")
    assert by.loc["C00000", "reason"] == "contact cap: 2 offers on email in the last 7 days"
    assert by.loc["C00001", "reason"].startswith("cooldown")
    assert list(by["action"]) == [NO_OFFER, NO_OFFER, "pct10", "pct10", "pct10"]
    assert (p.counts.blocked["cap"], p.counts.blocked["cooldown"]) == (1, 1)


def test_holdout_share_is_seeded_and_propensities_follow_the_randomisation(tmp_path) -> None:
    frame = audience(4000, CATALOG, seed=6)
    first = plan(frame, tmp_path, budget=1e6, holdout_share=0.2, seed=11)
    again = plan(frame, tmp_path, budget=1e6, holdout_share=0.2, seed=11)
    other = plan(frame, tmp_path, budget=1e6, holdout_share=0.2, seed=12)
    mine = assigned(first)
    assert first.counts.assigned > 1500
    assert mine["holdout"].mean() == pytest.approx(0.2, abs=0.03)
    assert first.counts.held_out == mine["holdout"].sum()
    assert first.counts.treated == first.counts.assigned - first.counts.held_out
    held = set(mine.loc[mine["holdout"], "customer_id"])
    assert held == set(again.rows.loc[again.rows["holdout"], "customer_id"])
    assert held != set(other.rows.loc[other.rows["holdout"], "customer_id"])
    rows = first.rows
    treated, out = rows["action"] != NO_OFFER, rows["holdout"]
    assert (rows.loc[treated, "propensity"] == 0.8).all()
    assert (rows.loc[out, "propensity"] == 0.2).all()
    assert (rows.loc[out, "action"] == NO_OFFER).all()
    assert (rows.loc[~treated & ~out, "propensity"] == 1.0).all()
    assert not (treated & out).any()
    # The summary is the treated customers'; the "plan" comparison treats every assigned one.
    assert first.spent == pytest.approx(rows.loc[treated, "expected_cost"].sum())
    assert first.spent < first.comparisons[0].expected_cost
    assert rows["decision_id"].is_unique


def test_expected_values_reuse_the_decision_formula(tmp_path) -> None:
    catalog = catalog_of(offer("pct10", 10, 0.5))
    frame = audience(
        2, catalog, uplift_pct10=0.2, p_buy_pct10=0.3, profile_avg_order_value=[100.0, np.nan]
    )
    p = plan(frame, tmp_path, catalog=catalog, budget=100, mean_order_value=50.0)
    row, blank = p.rows.to_dict("records")
    # 0.2 uplift x 30 margin - 0.3 x (0.5 cost + 10 discount) - 0.01 contact
    assert row["expected_profit"] == pytest.approx(0.2 * 30 - 0.3 * 10.5 - 0.01)
    assert row["expected_cost"] == pytest.approx(0.3 * 10.5 + 0.01)
    assert row["expected_uplift"] == pytest.approx(0.2)
    # No order value: the book's mean (50) stands in, as decide does.
    assert blank["expected_profit"] == pytest.approx(0.2 * 15 - 0.3 * 5.5 - 0.01)


def test_offers_are_checked_with_what_to_do(tmp_path) -> None:
    catalog = {
        **CATALOG,
        "sms5": offer("sms5", channel="sms"),
        "old": offer("old", valid_to=datetime(2024, 3, 1, tzinfo=UTC)),
        "unscored": offer("unscored"),
    }
    frame = audience(10, CATALOG)
    frame["uplift_old"] = frame["p_buy_old"] = 0.1
    for offer_ids, words in (
        (["nope"], "unknown offer id 'nope'"),
        (["sms5"], "is a sms offer, not email"),
        (["old"], "not valid on 2024-06-01"),
        (["unscored"], "kizuna train offers"),
    ):
        with pytest.raises(CampaignError, match=words) as caught:
            plan(frame, tmp_path, catalog=catalog, offer_ids=offer_ids)
        assert caught.value.field == "offer_ids"
    # The default: every valid, scored offer of the channel.
    assert plan(frame, tmp_path, catalog=catalog).offer_ids == ("pct10", "pct20", "pct30")
    with pytest.raises(CampaignError, match="no push offer") as caught:
        plan(frame, tmp_path, catalog=catalog, channel="push")
    assert caught.value.field == "channel"


def test_csv_and_commit_log_decisions_the_caps_then_see(tmp_path, settings) -> None:
    frame = audience(300, CATALOG, seed=8)
    history = DecisionLog(settings.home_dir / "serving")
    p = plan(frame, tmp_path, budget=80.0, holdout_share=0.3, history=history)
    csv = pd.read_csv(io.StringIO(to_csv(p)))
    assert list(csv.columns) == CSV_COLUMNS and len(csv) == 300
    assert (csv["campaign_id"] == p.campaign_id).all()
    path = commit_plan(p, history, settings, {"offers": "3"})
    assert path == campaigns_dir(settings) / f"{p.campaign_id}.csv"
    assert path.read_text() == to_csv(p)
    reloaded = DecisionLog(settings.home_dir / "serving")  # from disk
    treated = p.rows[p.rows["action"] != NO_OFFER]
    held = p.rows[p.rows["holdout"]]
    assert len(treated) > 0 and len(held) > 0
    for row in treated.itertuples():
        assert reloaded.contacts(row.customer_id) == [(AT, "email", row.action)]
    assert all(reloaded.contacts(c) == [] for c in held["customer_id"])
    record = reloaded._decisions[treated["decision_id"].iloc[0]]
    assert record["campaign_id"] == p.campaign_id and record["explored"] is False
    assert record["propensity"] == pytest.approx(0.7)
    assert record["model_versions"] == {"offers": "3"} and record["reason"]
    assert reloaded.outcome(record["decision_id"], {"outcome": "redeemed"}) is not None
    # A second campaign right after: the committed offers are cooling down.
    second = plan(frame, tmp_path, budget=80.0, history=reloaded)
    again = second.rows.merge(treated, on="customer_id", suffixes=("", "_before"))
    assert not (again["action"] == again["action_before"]).any()


class FakeBook:
    """What the route reads of a score book."""

    def __init__(self, table: pd.DataFrame, champions: Champions) -> None:
        self.table, self.champions, self.mean_order_value = table, champions, 60.0


def client(settings, champions: Champions) -> tuple[TestClient, str]:
    app = FastAPI()
    errors.install(app)
    app.include_router(route.router)
    key = KeyStore(settings).create("planner", ("offers",))
    state = app.state
    state.keys, state.settings, state.catalog, state.policy = (
        KeyStore(settings),
        settings,
        CATALOG,
        POLICY,
    )
    state.decisions = DecisionLog(settings.home_dir / "serving")
    state.book = FakeBook(audience(60, CATALOG, seed=9), champions)
    return TestClient(app, headers={"Authorization": f"Bearer {key}"}), key


SERVED = Champions({"offers": object()}, {"offers": "4"}, {}, {"offers": "4"})


def test_the_route_plans_commits_and_explains_errors(settings) -> None:
    c, _ = client(settings, SERVED)
    body = {"channel": "email", "budget": 20, "seed": 3}
    dry = c.post("/v1/campaigns", json={**body, "dry_run": True})
    assert dry.status_code == 200, dry.text
    got = dry.json()
    assert got["dry_run"] and len(got["rows"]) == 60 and got["spent"] <= 20
    assert [x["strategy"] for x in got["comparisons"]] == ["plan", "best_single_offer", "high_risk"]
    assert set(got["counts"]["blocked"]) == set(BLOCKS)
    assert not (settings.home_dir / "serving" / "decisions.jsonl").exists()
    ids = ["C00001", "C00005"]
    csv = c.post("/v1/campaigns", json={**body, "audience": {"customer_ids": ids}, "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert list(pd.read_csv(io.StringIO(csv.text))["customer_id"]) == ids
    assert len(list(campaigns_dir(settings).glob("*.csv"))) == 1
    logged = (settings.home_dir / "serving" / "decisions.jsonl").read_text().splitlines()
    assert len(logged) == 2
    for payload, status, field in (
        ({**body, "offer_ids": ["nope"]}, 400, "offer_ids"),
        ({**body, "audience": {"customer_ids": ["ghost"]}}, 404, "audience.customer_ids"),
        ({**body, "budget": 0}, 422, "budget"),
        ({**body, "holdout_share": 0.6}, 422, "holdout_share"),
    ):
        answer = c.post("/v1/campaigns", json=payload)
        assert answer.status_code == status and answer.json()["field"] == field, answer.text
        assert answer.headers["content-type"] == errors.PROBLEM
    missing = Champions({}, {}, {"offers": "no champion: run `kizuna train offers`"}, {})
    c, _ = client(settings.model_copy(update={"home": settings.home / "b"}), missing)
    answer = c.post("/v1/campaigns", json=body)
    assert answer.status_code == 503 and "the campaign planner" in answer.json()["detail"]


def test_a_campaign_against_the_real_server(server) -> None:
    """Needs serving/app.py to include the campaigns router."""
    request = {"channel": "email", "budget": 25, "holdout_share": 0.2, "seed": 5}
    with server.client("offers") as c:
        dry = c.post("/v1/campaigns", json={**request, "dry_run": True})
        assert dry.status_code == 200, dry.text
        plan_ = dry.json()
        assert plan_["offer_ids"] == ["pct10_email", "pct20_email"]
        assert plan_["spent"] <= 25 and plan_["counts"]["audience"] == len(plan_["rows"])
        mine, *others = plan_["comparisons"]
        assert all(mine["expected_profit"] >= o["expected_profit"] - 1e-9 for o in others)
        committed = c.post("/v1/campaigns", json=request)
        assert committed.status_code == 200, committed.text
        sent = next(r for r in committed.json()["rows"] if r["action"] != NO_OFFER)
        outcome = c.post(
            f"/v1/decisions/{sent['decision_id']}/outcome", json={"outcome": "redeemed"}
        )
        assert outcome.status_code == 202
        unknown = c.post("/v1/campaigns", json={**request, "offer_ids": ["freeship_sms"]})
        assert unknown.status_code == 400 and "not email" in unknown.json()["detail"]
