"""The simulator: determinism, contract conformance, and ground truth visible in the data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from kizuna.features.contracts import ARROW_TYPES, CONTRACTS, EVENT_VALUE_RANGES
from kizuna.features.simulate import (
    OFFER_WINDOW_DAYS,
    OFFERS,
    SIMULATED_KINDS,
    SimulationError,
    SimulationSummary,
    simulate,
)

START = date(2024, 1, 1)
START_TS = pd.Timestamp(START, tz="UTC")
DAYS = 730
CONTACT_EVENTS = {"email_open", "email_click", "push_open", "unsubscribe"}
ENGAGEMENT_EVENTS = ["session", "page_view", "email_open", "email_click", "push_open"]


@dataclass
class Retailer:
    summary: SimulationSummary
    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]


def _day(ts: pd.Series) -> pd.Series:
    """Day index of a timestamp within the simulated period."""
    return (ts - START_TS).dt.days


@pytest.fixture(scope="module")
def retailer(tmp_path_factory: pytest.TempPathFactory) -> Retailer:
    out = tmp_path_factory.mktemp("retailer")
    summary = simulate(out, customers=5_000, days=DAYS, seed=7, start=START)
    tables = {kind: pd.read_parquet(path) for kind, path in summary.tables.items()}
    truth = {kind: pd.read_parquet(path) for kind, path in summary.ground_truth.items()}
    return Retailer(summary, tables, truth)


@pytest.fixture(scope="module")
def dropouts(retailer: Retailer) -> pd.DataFrame:
    """Customers who dropped out, with signup and dropout as day indices."""
    gt = retailer.truth["customers"].merge(retailer.tables["customers"], on="customer_id")
    gone = gt[gt.true_dropout_at.notna()].copy()
    gone["signup_day"] = _day(gone.signup_at)
    gone["dropout_day"] = _day(gone.true_dropout_at)
    return gone


# --- code: API and determinism -----------------------------------------------------------------


def test_summary_counts_what_was_written(retailer: Retailer) -> None:
    s = retailer.summary
    assert (s.customers, s.days, s.seed) == (5_000, DAYS, 7)
    assert (s.period_start, s.period_end) == (START, date(2025, 12, 31))
    assert s.rows == {kind: len(df) for kind, df in retailer.tables.items()}
    assert s.ground_truth_rows == {kind: len(df) for kind, df in retailer.truth.items()}
    assert set(s.tables) == set(SIMULATED_KINDS)
    assert {p.name for p in s.tables.values()} == {f"{k}.parquet" for k in SIMULATED_KINDS}
    assert all(p.parent == s.out / "ground_truth" for p in s.ground_truth.values())
    assert s.seconds > 0
    assert not list(s.out.rglob("*.partial"))


def test_same_seed_gives_identical_tables_and_another_seed_does_not(tmp_path: Path) -> None:
    runs = {
        name: simulate(tmp_path / name, customers=2_000, days=365, seed=seed, chunk_customers=700)
        for name, seed in (("a", 3), ("b", 3), ("c", 4))
    }
    for kind in [*SIMULATED_KINDS, *runs["a"].ground_truth]:
        path = {name: (s.tables | s.ground_truth)[kind] for name, s in runs.items()}
        a, b, c = (pd.read_parquet(path[name]) for name in "abc")
        pd.testing.assert_frame_equal(a, b)
        assert path["a"].read_bytes() == path["b"].read_bytes()
        if kind != "offers":  # the catalogue is the same whatever the seed
            assert not a.equals(c), kind
    assert runs["a"].rows == runs["b"].rows != runs["c"].rows


def test_chunks_give_all_customers_unique_ids_and_one_row_group_each(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    s = simulate(
        tmp_path,
        customers=2_500,
        days=120,
        seed=1,
        chunk_customers=1_000,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]
    customers = pd.read_parquet(s.tables["customers"])
    assert len(customers) == 2_500 and customers.customer_id.is_unique
    assert customers.customer_id.iloc[[0, -1]].tolist() == ["C000001", "C002500"]
    for kind in ("customers", "orders", "events", "exposures"):
        assert pq.ParquetFile(s.tables[kind]).metadata.num_row_groups == 3, kind
        keys = pd.read_parquet(s.tables[kind], columns=list(CONTRACTS[kind].key))
        assert not keys.duplicated().any(), kind
    truth = pd.read_parquet(s.ground_truth["customers"])
    assert truth.customer_id.tolist() == customers.customer_id.tolist()


@pytest.mark.parametrize(("customers", "days", "chunk"), [(0, 10, 10), (10, 0, 10), (10, 10, 0)])
def test_non_positive_sizes_are_refused(
    tmp_path: Path, customers: int, days: int, chunk: int
) -> None:
    with pytest.raises(SimulationError, match="must be positive"):
        simulate(tmp_path, customers=customers, days=days, seed=1, chunk_customers=chunk)


# --- data: every table in its contract ---------------------------------------------------------


@pytest.mark.parametrize("kind", SIMULATED_KINDS)
def test_table_conforms_to_its_contract(retailer: Retailer, kind: str) -> None:
    contract = CONTRACTS[kind]
    df = retailer.tables[kind]
    schema = pq.read_schema(retailer.summary.tables[kind])
    extra = [n for n in schema.names if n not in contract.names]
    assert schema.names[: len(contract.names)] == contract.names
    assert all(n.startswith("attr_") for n in extra) and (kind == "customers" or not extra)
    end = pd.Timestamp(retailer.summary.period_end, tz="UTC")
    for col in contract.columns:
        assert schema.field(col.name).type == ARROW_TYPES[col.type], col.name
        values = df[col.name]
        if col.required:
            assert values.notna().all(), col.name
        present = values.dropna()
        if col.allowed is not None:
            assert set(present) <= set(col.allowed), col.name
        if col.minimum is not None:
            assert (present >= col.minimum).all(), col.name
        if col.maximum is not None:
            assert (present <= col.maximum).all(), col.name
        if col.not_in_future:
            assert (present < end).all() and end <= datetime.now(UTC), col.name
    assert not df.duplicated(list(contract.key)).any()
    assert len(df) > 0


def test_orders_amounts_lines_and_offers_are_consistent(retailer: Retailer) -> None:
    orders, lines = retailer.tables["orders"], retailer.tables["order_lines"]
    assert (orders.amount[orders.amount < 0].index.isin(orders.index[orders.is_return])).all()
    assert (orders.amount[orders.is_return] <= 0).all()
    assert (orders.amount[~orders.is_return] > 0).all()
    assert 0.01 < orders.is_return.mean() < 0.10
    assert (lines.quantity != 0).all()
    line_order = lines.merge(orders[["order_id", "is_return"]], on="order_id")
    assert ((line_order.quantity < 0) == line_order.is_return).all()
    gross = (lines.quantity * lines.unit_price).groupby(lines.order_id).sum()
    bought = orders[~orders.is_return].set_index("order_id")
    net = gross.loc[bought.index] - bought.discount_amount
    assert np.allclose(net, bought.amount, atol=0.011)
    assert (
        lines.groupby("order_id")
        .line_number.apply(lambda s: s.tolist() == list(range(1, len(s) + 1)))
        .all()
    )
    redeemed = bought[bought.offer_id.notna()]
    percent = {o.offer_id for o in OFFERS if o.kind == "percent_discount"}
    assert len(redeemed) > 100
    assert (redeemed.discount_amount[redeemed.offer_id.isin(percent)] > 0).all()
    assert (bought.discount_amount[~bought.offer_id.isin(percent)] == 0).all()
    assert orders.offer_id[orders.is_return].isna().all()
    # A return comes after an order of the same customer.
    first_order = orders[~orders.is_return].groupby("customer_id").ordered_at.min()
    returns = orders[orders.is_return]
    assert (returns.ordered_at.values > first_order.loc[returns.customer_id].values).all()


def test_every_reference_resolves(retailer: Retailer) -> None:
    t = retailer.tables
    customers = set(t["customers"].customer_id)
    for kind in ("orders", "events", "exposures"):
        assert set(t[kind].customer_id) <= customers, kind
    assert set(t["order_lines"].order_id) <= set(t["orders"].order_id)
    assert set(t["orders"].order_id[~t["orders"].is_return]) <= set(t["order_lines"].order_id)
    offers = set(t["offers"].offer_id)
    assert set(t["exposures"].offer_id.dropna()) == offers
    assert set(t["orders"].offer_id.dropna()) <= offers


def test_event_values_and_channels_follow_the_types(retailer: Retailer) -> None:
    events = retailer.tables["events"]
    for kind, (low, high) in EVENT_VALUE_RANGES.items():
        values = events.value[events.type == kind]
        assert len(values) > 20 and values.notna().all(), kind
        assert values.between(low, high).all() and (values == values.round()).all(), kind
    pages = events.value[events.type == "page_view"]
    assert (pages >= 1).all() and (pages == pages.round()).all()
    assert (events.type == "page_view").sum() == (events.type == "session").sum()
    contact = events.type.isin(CONTACT_EVENTS)
    assert events.channel[contact].notna().all() and events.channel[~contact].isna().all()
    assert set(events.channel[events.type.str.startswith("email")]) == {"email"}
    assert set(events.channel[events.type == "push_open"]) == {"push"}


def test_nothing_happens_before_signup(retailer: Retailer) -> None:
    signup = retailer.tables["customers"].set_index("customer_id").signup_at
    end = pd.Timestamp(retailer.summary.period_end, tz="UTC")
    for kind, column in (
        ("orders", "ordered_at"),
        ("events", "occurred_at"),
        ("exposures", "sent_at"),
    ):
        df = retailer.tables[kind]
        assert (df[column].values >= signup.loc[df.customer_id].values).all(), kind
        assert df[column].between(START_TS, end, inclusive="left").all(), kind
    assert (signup < pd.Timestamp(retailer.summary.period_end, tz="UTC")).all()
    assert 0.5 < (signup >= START_TS).mean() < 0.8


def test_exposures_randomise_with_the_stated_propensity(retailer: Retailer) -> None:
    exposures = retailer.tables["exposures"]
    offers = retailer.tables["offers"].set_index("offer_id")
    treated = exposures.offer_id.notna()
    offer_channel = offers.channel.loc[exposures.offer_id[treated]].to_numpy()
    assert (exposures.channel[treated] == offer_channel).all()
    for channel, group in exposures.groupby("channel"):
        arms = group.offer_id.fillna("control").value_counts(normalize=True)
        assert len(arms) == (offers.channel == channel).sum() + 1
        # Each arm's share is its propensity, within 4 binomial standard errors.
        expected = group.propensity.iloc[0]
        assert (group.propensity == expected).all()
        assert np.allclose(arms, expected, atol=4 * np.sqrt(expected * (1 - expected) / len(group)))


def test_no_ground_truth_column_leaks_into_the_tables(retailer: Retailer) -> None:
    contract_columns = {c for df in retailer.tables.values() for c in df.columns}
    truth = retailer.truth
    hidden = {*truth["customers"].columns, *truth["offer_effects"].columns} - {
        "customer_id",
        "exposure_id",
        "offer_id",
        "consent_email",
        "consent_sms",
        "consent_push",
    }
    assert {"segment", "true_dropout_at", "true_uplift", "satisfaction"} <= hidden
    assert not contract_columns & hidden
    assert [c for c in retailer.tables["customers"] if c.startswith("attr_")] == [
        "attr_acquisition_channel"
    ]


def test_loyalty_tier_comes_from_spend_before_the_period(retailer: Retailer) -> None:
    customers = retailer.tables["customers"]
    joined_during = customers.signup_at >= START_TS
    assert (customers.loyalty_tier[joined_during] == "bronze").all()
    assert customers.loyalty_tier[~joined_during].nunique() == 4


# --- ground truth visible in the data ----------------------------------------------------------


def test_volumes_are_those_of_a_retailer(retailer: Retailer) -> None:
    orders = retailer.tables["orders"]
    per_buyer = orders[~orders.is_return].groupby("customer_id").size()
    assert 8 <= per_buyer.mean() <= 15
    assert len(retailer.tables["events"]) / retailer.summary.customers < 60
    gone = retailer.truth["customers"].true_dropout_at.notna().mean()
    assert 0.15 < gone < 0.5


def test_no_purchase_or_engagement_after_dropout(retailer: Retailer) -> None:
    dropout = retailer.truth["customers"].set_index("customer_id").true_dropout_at
    orders = retailer.tables["orders"]
    bought = orders[~orders.is_return]
    after = bought.ordered_at.values >= dropout.loc[bought.customer_id].values
    assert not after.any()
    events = retailer.tables["events"]
    assert not (events.occurred_at.values >= dropout.loc[events.customer_id].values).any()
    truth = retailer.truth["customers"]
    gone = truth.true_dropout_at.notna()
    fading = (truth.true_dropout_at - truth.fading_start_at).dt.days[gone]
    assert fading.between(14, 60).all()


def test_sales_peak_in_november_and_december(retailer: Retailer) -> None:
    orders = retailer.tables["orders"]
    month = orders.ordered_at[~orders.is_return].dt.month
    in_2025 = orders.ordered_at[~orders.is_return].dt.year == 2025
    by_month = month[in_2025].value_counts()
    assert by_month.loc[[11, 12]].mean() > 1.15 * by_month.loc[[9, 10]].mean()


def test_randomised_arms_recover_the_true_uplift(retailer: Retailer) -> None:
    exposures = retailer.tables["exposures"].copy()
    orders = retailer.tables["orders"]
    effects = retailer.truth["offer_effects"]
    exposures["sent_day"] = _day(exposures.sent_at)
    bought = orders[~orders.is_return].assign(day=_day(orders.ordered_at))[["customer_id", "day"]]
    pairs = exposures[["exposure_id", "customer_id", "sent_day"]].merge(bought, on="customer_id")
    in_window = pairs.day.gt(pairs.sent_day) & pairs.day.le(pairs.sent_day + OFFER_WINDOW_DAYS)
    bought_in_window = set(pairs.exposure_id[in_window])
    exposures["bought"] = exposures.exposure_id.isin(bought_in_window)
    for offer in OFFERS:
        same_channel = exposures[exposures.channel == offer.channel]
        is_arm = same_channel.offer_id == offer.offer_id
        arm = same_channel.bought[is_arm]
        control = same_channel.bought[same_channel.offer_id.isna()]
        observed = arm.mean() - control.mean()
        effect = effects[effects.offer_id == offer.offer_id].set_index("exposure_id")
        true_uplift = effect.true_uplift.loc[same_channel.exposure_id].mean()
        # Assignment is random, so the difference in means estimates the mean true uplift
        # over the campaign's exposures with the (Neyman) standard error below: about 0.007
        # with ~5,000 exposures per arm. 3 standard errors is a 0.3 % two-sided false alarm.
        se = np.sqrt(arm.var() / len(arm) + control.var() / len(control))
        assert len(arm) > 3_000 and len(control) > 3_000
        assert abs(observed - true_uplift) < 3 * se, offer.offer_id
        # Given who was assigned, the arm's rate is a mean of independent Bernoullis with
        # the recorded probabilities.
        p = effect.p_buy_if_offer.loc[same_channel.exposure_id[is_arm]]
        assert abs(arm.mean() - p.mean()) < 3 * np.sqrt((p * (1 - p)).sum()) / len(p)
    assert OFFERS[1].offer_id == "pct20_email"
    assert effects.true_uplift[effects.offer_id == "pct20_email"].mean() > 0.03


def test_offer_effects_cover_every_exposure_and_offer(retailer: Retailer) -> None:
    effects = retailer.truth["offer_effects"]
    exposures = retailer.tables["exposures"]
    assert len(effects) == len(exposures) * len(OFFERS)
    assert effects.groupby("exposure_id").offer_id.nunique().eq(len(OFFERS)).all()
    assert np.allclose(effects.true_uplift, effects.p_buy_if_offer - effects.p_buy_if_control)
    assert effects[["p_buy_if_offer", "p_buy_if_control"]].stack().between(0, 1).all()
    assert (effects.window_days == OFFER_WINDOW_DAYS).all()
    assert effects.active_window_days.between(0, OFFER_WINDOW_DAYS).all()
    assigned = effects[effects.assigned].set_index("exposure_id").offer_id
    treated = exposures.dropna(subset=["offer_id"]).set_index("exposure_id").offer_id
    assert assigned.sort_index().equals(treated.sort_index())
    # A customer dropped out before the send cannot buy, whatever the arm.
    dead = effects.active_window_days == 0
    assert dead.any()
    assert (effects.loc[dead, ["p_buy_if_offer", "p_buy_if_control"]] == 0).all().all()


def test_segments_have_the_uplift_their_name_says(retailer: Retailer) -> None:
    effects = retailer.truth["offer_effects"].merge(
        retailer.truth["customers"][["customer_id", "segment"]], on="customer_id"
    )
    can_buy = effects.p_buy_if_control > 0
    by_segment = effects[can_buy].groupby("segment").true_uplift
    assert (by_segment.max()["sleeping_dog"] < 0) and (by_segment.min()["persuadable"] > 0)
    means = by_segment.mean()
    assert means["persuadable"] > means["sure_thing"] > 0
    assert abs(means["lost_cause"]) < 1e-9
    base = retailer.truth["customers"].groupby("segment").base_purchase_rate.mean()
    assert base["sure_thing"] > base["persuadable"] > 10 * base["lost_cause"]


def test_exposures_never_overlap_for_a_customer(retailer: Retailer) -> None:
    sent = retailer.tables["exposures"].assign(day=lambda d: _day(d.sent_at))
    gaps = sent.sort_values("sent_at").groupby("customer_id").day.diff().dropna()
    assert gaps.min() > OFFER_WINDOW_DAYS


def test_engagement_falls_in_the_month_before_dropout(
    dropouts: pd.DataFrame, retailer: Retailer
) -> None:
    gone = dropouts[dropouts.dropout_day - dropouts.signup_day.clip(lower=0) >= 180]
    assert len(gone) > 200
    events = retailer.tables["events"]
    engaged = events[
        events.type.isin(ENGAGEMENT_EVENTS) & events.customer_id.isin(gone.customer_id)
    ]
    before = _day(engaged.occurred_at) - engaged.customer_id.map(
        gone.set_index("customer_id").dropout_day
    )
    last_month = before.between(-30, -1).sum() / 30
    earlier = before.between(-180, -91).sum() / 90
    assert last_month < 0.6 * earlier


def test_complaints_are_more_common_among_customers_who_drop_out(retailer: Retailer) -> None:
    truth = retailer.truth["customers"].merge(retailer.tables["customers"], on="customer_id")
    begin = _day(truth.signup_at).clip(lower=0)
    end = _day(truth.true_dropout_at).fillna(DAYS)
    complaints = retailer.tables["events"].query("type == 'complaint'").customer_id.value_counts()
    truth["complaints"] = truth.customer_id.map(complaints).fillna(0)
    truth["active_days"] = (end - begin).clip(lower=1)
    gone = truth.true_dropout_at.notna()

    def per_thousand_days(rows: pd.DataFrame) -> float:
        return 1000 * rows.complaints.sum() / rows.active_days.sum()

    assert per_thousand_days(truth[gone]) > 1.5 * per_thousand_days(truth[~gone])
    assert truth.satisfaction[gone].mean() < truth.satisfaction[~gone].mean()


def test_opted_out_and_unsubscribed_customers_are_not_contacted(retailer: Retailer) -> None:
    customers, events = retailer.tables["customers"], retailer.tables["events"]
    exposures = retailer.tables["exposures"]
    for channel in ("email", "sms", "push"):
        out = set(customers.customer_id[~customers[f"consent_{channel}"]])
        assert out, channel
        assert not exposures.customer_id[exposures.channel == channel].isin(out).any(), channel
        assert not events.customer_id[events.channel == channel].isin(out).any(), channel
    left = events[events.type == "unsubscribe"]
    assert len(left) > 20 and not left.duplicated(["customer_id", "channel"]).any()
    contacts = pd.concat(
        [
            exposures[["customer_id", "channel", "sent_at"]].rename(columns={"sent_at": "at"}),
            events[events.type != "unsubscribe"][["customer_id", "channel", "occurred_at"]]
            .rename(columns={"occurred_at": "at"})
            .dropna(subset=["channel"]),
        ]
    ).merge(left[["customer_id", "channel", "occurred_at"]], on=["customer_id", "channel"])
    assert len(contacts) > 0 and (contacts["at"] < contacts.occurred_at).all()


def test_unsubscribes_rise_with_contact_frequency(retailer: Retailer) -> None:
    sent = retailer.tables["exposures"].dropna(subset=["offer_id"])
    sent = sent.assign(day=_day(sent.sent_at)).sort_values(["customer_id", "day"])
    sent["recent"] = (sent.day - sent.groupby("customer_id").day.shift(1)).le(30)
    left = retailer.tables["events"].query("type == 'unsubscribe'")
    left = left.assign(left_day=_day(left.occurred_at))[["customer_id", "channel", "left_day"]]
    pairs = sent.reset_index().merge(left, on=["customer_id", "channel"])
    soon = pairs["index"][pairs.left_day.between(pairs.day, pairs.day + 2)]
    sent["left"] = sent.index.isin(soon)
    rate = sent.groupby("recent").left.mean()
    assert rate[True] > 1.5 * rate[False] > 0


def test_sessions_lead_purchases(retailer: Retailer) -> None:
    orders, events = retailer.tables["orders"], retailer.tables["events"]
    bought = orders[~orders.is_return]
    bought_on = pd.DataFrame({"customer_id": bought.customer_id, "day": _day(bought.ordered_at)})
    lead_days = pd.concat(
        [bought_on.assign(day=bought_on.day - lag) for lag in (1, 2, 3)]
    ).drop_duplicates()
    session = events[events.type == "session"]
    sessions = pd.DataFrame({"customer_id": session.customer_id, "day": _day(session.occurred_at)})
    in_lead = sessions.merge(lead_days, on=["customer_id", "day"]).shape[0] / len(sessions)
    truth = retailer.truth["customers"].merge(retailer.tables["customers"], on="customer_id")
    customer_days = (
        (_day(truth.true_dropout_at).fillna(DAYS) - _day(truth.signup_at).clip(lower=0))
        .clip(lower=0)
        .sum()
    )
    # Sessions crowd into the three days before an order, far beyond those days' share.
    assert in_lead > 2 * len(lead_days) / customer_days


def test_short_cycle_shoppers_come_back_sooner(retailer: Retailer) -> None:
    orders = retailer.tables["orders"]
    bought = orders[~orders.is_return].sort_values("ordered_at")
    gaps = bought.groupby("customer_id").ordered_at.diff().dt.days.dropna()
    category = retailer.truth["customers"].set_index("customer_id").main_category
    gap_by_category = gaps.groupby(bought.customer_id.loc[gaps.index].map(category)).median()
    assert gap_by_category["grocery"] < gap_by_category["home"] < gap_by_category["electronics"]


def test_the_simulated_retailer_ingests_cleanly(tmp_path: Path) -> None:
    """The simulator writes what the contracts accept: every row lands, none is rejected."""
    from kizuna.features.ingest import ingest
    from kizuna.features.lake import Lake
    from kizuna.settings import Settings

    summary = simulate(tmp_path / "sim", customers=1_500, days=365, seed=3)
    settings = Settings(home=tmp_path / "home")
    report = ingest([summary.out], settings, now=datetime(2026, 1, 1, tzinfo=UTC))
    for kind, rows in summary.rows.items():
        rep = report.kinds[kind]
        assert (rep.read, rep.accepted, rep.rejected_rows, rep.review_total) == (rows, rows, 0, 0)
        assert rep.unknown_customers == 0
    assert Lake(settings).counts() == {**dict.fromkeys(CONTRACTS, 0), **summary.rows}
    again = ingest([summary.out], settings, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert all(r.accepted == 0 for r in again.kinds.values())
