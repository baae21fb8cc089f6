"""Consent, tier and country changes: a re-ingested customer row is a change kept as
history (not a conflict), and the profile at each cutoff is the one that held then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from kizuna.features.compute import Tables, compute_snapshots
from kizuna.features.ingest import connect, ingest
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from kizuna.training.dataset import allowing_profiling
from tests.world import write_csvs

FIRST = """customer_id,signup_at,country,loyalty_tier,consent_email,consent_profiling
A,2025-01-01,DE,bronze,true,true
B,2025-01-01,FR,silver,true,true
"""
CHANGED = """customer_id,signup_at,country,loyalty_tier,consent_email,consent_profiling
A,2025-01-01,DE,gold,false,false
B,2025-01-01,FR,silver,true,
"""
ORDERS = """order_id,customer_id,ordered_at,amount
a1,A,2025-02-01T10:00:00Z,40
b1,B,2025-02-03T10:00:00Z,20
"""


def _profile(settings: Settings, at: datetime) -> pd.DataFrame:
    tables = Tables.from_lake(Lake(settings))
    frame = compute_snapshots(connect(settings), tables, [at])["customer_profile"]
    return frame.set_index("customer_id")


def test_a_changed_customer_row_is_history_and_each_cutoff_sees_its_own_profile(
    tmp_path,
) -> None:
    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    ingest([write_csvs(tmp_path / "first", customers=FIRST, orders=ORDERS)], settings, now=t0)
    t1 = datetime(2025, 4, 1, tzinfo=UTC)
    report = ingest([write_csvs(tmp_path / "changed", customers=CHANGED)], settings, now=t1)
    customers = report.kinds["customers"]
    # A changed tier and two consents; B's empty consent_profiling changes nothing.
    assert customers.profile_updates == 1 and customers.already_in_lake == 1
    assert customers.review_total == 0 and customers.accepted == 0
    changes = Lake(settings).read("profile_changes")
    assert len(changes) == 1
    row = changes.iloc[0]
    assert row["customer_id"] == "A" and row["changed_at"] == pd.Timestamp(t1)
    assert (row["loyalty_tier"], row["consent_email"], row["consent_profiling"]) == (
        "gold",
        False,
        False,
    )
    assert pd.isna(row["country"]) and pd.isna(row["consent_sms"])
    assert row["source"] == "ingest customers.csv"

    # The same file again changes nothing more.
    again = ingest([tmp_path / "changed"], settings, now=t1 + timedelta(days=1))
    assert again.kinds["customers"].profile_updates == 0
    assert len(Lake(settings).read("profile_changes")) == 1

    before, after = _profile(settings, t1 - timedelta(days=1)), _profile(settings, t1)
    assert before.loc["A", "loyalty_tier"] == "bronze" and bool(before.loc["A", "consent_email"])
    assert bool(before.loc["A", "consent_profiling"])
    assert after.loc["A", "loyalty_tier"] == "gold" and not after.loc["A", "consent_email"]
    assert not after.loc["A", "consent_profiling"]
    assert after.loc["B", "loyalty_tier"] == "silver" and bool(after.loc["B", "consent_profiling"])

    # Training rows: A's rows before the opt-out stay, from it on they are left out.
    con = connect(settings)
    rows = pd.DataFrame(
        {
            "customer_id": ["A", "A", "B"],
            "event_timestamp": pd.to_datetime([t1 - timedelta(days=1), t1, t1], utc=True),
        }
    )
    kept = allowing_profiling(con, Tables.from_lake(Lake(settings)), rows)
    assert list(zip(kept["customer_id"], kept["event_timestamp"], strict=True)) == [
        ("A", pd.Timestamp(t1 - timedelta(days=1))),
        ("B", pd.Timestamp(t1)),
    ]


def test_a_different_signup_is_still_a_conflict_for_review(tmp_path) -> None:
    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    ingest([write_csvs(tmp_path / "first", customers=FIRST)], settings)
    other = FIRST.replace("A,2025-01-01,DE", "A,2025-02-02,DE")
    report = ingest([write_csvs(tmp_path / "other", customers=other)], settings)
    assert report.kinds["customers"].review["customer_id:conflicts_with_lake"] == 1
    assert report.kinds["customers"].profile_updates == 0
    assert Lake(settings).read("profile_changes").empty


def test_the_latest_word_on_consent_wins_unsubscribe_or_renewal(tmp_path) -> None:
    """An unsubscribe withdraws a channel's consent; a consent renewed after it (a profile
    change) gives it back; an unsubscribe without a channel withdraws it again."""
    settings = Settings(home=tmp_path / "home", mlruns=tmp_path / "mlruns")
    events = """event_id,customer_id,occurred_at,type,channel
u1,A,2025-03-01T09:00:00Z,unsubscribe,email
u2,A,2025-05-01T09:00:00Z,unsubscribe,
"""
    changes = """change_id,customer_id,changed_at,consent_email,consent_sms
c1,A,2025-04-01T09:00:00Z,true,
c2,B,2025-03-01T09:00:00Z,,true
"""
    folder = write_csvs(
        tmp_path / "in", customers=FIRST, orders=ORDERS, events=events, profile_changes=changes
    )
    ingest([folder], settings, now=datetime(2025, 6, 1, tzinfo=UTC))
    seen = {
        day: _profile(settings, datetime(2025, *day, 9, tzinfo=UTC)).loc["A", "consent_email"]
        for day in [(2, 15), (3, 1), (3, 15), (4, 1), (4, 15), (5, 15)]
    }
    # The unsubscribe at the very moment of the cutoff counts; the renewal from its own.
    assert {day: bool(v) for day, v in seen.items()} == {
        (2, 15): True,
        (3, 1): False,
        (3, 15): False,
        (4, 1): True,
        (4, 15): True,
        (5, 15): False,
    }
    # A consent given by a change (the customer row had none) holds with no unsubscribe.
    at = _profile(settings, datetime(2025, 3, 15, tzinfo=UTC))
    assert bool(at.loc["B", "consent_sms"]) and not bool(at.loc["A", "consent_sms"])
