"""Labels from what happened after each cutoff: churn, timing (censored), value, response."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from kizuna.features.compute import Tables
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from kizuna.training.labels import (
    LabelError,
    default_churn_horizon,
    offer_response_frame,
    outcome_frame,
    split_cutoffs,
)
from tests.conftest import NOW

ORDERS = """order_id,customer_id,ordered_at,amount,is_return
a1,alice,2024-01-01T10:00:00Z,10,
a2,alice,2024-01-11T10:00:00Z,20,
a3,alice,2024-01-21T10:00:00Z,30,
a4,alice,2024-03-01T10:00:00Z,40,
a5,alice,2024-03-05T10:00:00Z,-15,true
b1,bob,2024-01-05T10:00:00Z,50,
c1,carol,2024-02-20T10:00:00Z,5,
e1,erin,2024-06-30T10:00:00Z,1,
"""
EXPOSURES = """exposure_id,customer_id,offer_id,sent_at,channel,propensity
x1,alice,off10,2024-02-25T00:00:00Z,email,0.5
x2,bob,,2024-02-25T00:00:00Z,email,0.5
x3,erin,off10,2024-06-25T00:00:00Z,email,0.5
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def tables(tmp_path: Path, settings: Settings):
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "exposures.csv").write_text(EXPOSURES)
    ingest([tmp_path / "orders.csv", tmp_path / "exposures.csv"], settings, now=NOW)
    return connect(settings), Tables.from_lake(Lake(settings))


def test_churn_timing_and_value_use_only_what_came_after_the_cutoff(tables) -> None:
    con, t = tables
    frame = outcome_frame(con, t, [at("2024-01-15"), at("2024-06-20")], 30, value_days=60)
    rows = {(r.customer_id, r.event_timestamp.date().isoformat()): r for r in frame.itertuples()}
    # At Jan 15, the population is who had bought: alice and bob (carol starts in Feb).
    assert sorted(k[0] for k in rows if k[1] == "2024-01-15") == ["alice", "bob"]
    alice = rows[("alice", "2024-01-15")]
    assert (alice.churned, alice.repurchased) == (False, True)
    assert alice.days_to_next_purchase == pytest.approx(6 + 10 / 24)
    # Spend in (Jan 15, Mar 15]: 30 + 40 - 15 (the return counts against value).
    assert alice.future_value == 55
    bob = rows[("bob", "2024-01-15")]
    assert (bob.churned, bob.repurchased) == (True, False)
    # Censored at the end of the data (erin's order on Jun 30), not dropped.
    assert bob.days_to_next_purchase == pytest.approx(
        (at("2024-06-30T10:00") - at("2024-01-15")).total_seconds() / 86400
    )
    # At Jun 20 the 30-day window runs past the data: unknown, not "churned".
    late = rows[("carol", "2024-06-20")]
    assert late.churned is None or str(late.churned) == "<NA>"
    assert late.future_value != late.future_value  # NaN: the 60 days run past the data


def test_the_default_horizon_is_a_high_percentile_of_repeat_gaps(tables) -> None:
    con, t = tables
    horizon = default_churn_horizon(con, t, percentile=0.9)
    # alice's gaps between purchase days: 10, 10, 40 (the return is not a purchase).
    assert horizon.gaps == 3
    assert horizon.days == round(10 + 0.8 * 30)


def test_offer_response_counts_purchases_after_each_exposure(tables) -> None:
    con, t = tables
    frame = offer_response_frame(con, t, window_days=14).set_index("exposure_id")
    assert frame.loc["x1", "purchased"]  # alice bought on Mar 1
    assert not frame.loc["x2", "purchased"]  # bob, control, did not
    assert frame.loc["x2", "offer_id"] is None
    assert "x3" not in frame.index  # its window runs past the end of the data


def test_splits_are_time_ordered_and_refuse_too_few_cutoffs() -> None:
    cutoffs = [at(f"2024-0{m}-01") for m in (5, 1, 3, 2, 4)]
    train, valid, test = split_cutoffs(cutoffs)
    assert train == [at("2024-01-01"), at("2024-02-01"), at("2024-03-01")]
    assert (valid, test) == ([at("2024-04-01")], [at("2024-05-01")])
    with pytest.raises(LabelError, match="build more snapshots"):
        split_cutoffs(cutoffs[:2])
