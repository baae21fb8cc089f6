"""The score book in-process: ready before its reasons, explaining on request, updating
customers without disturbing the others."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from kizuna.serving.lists import ListFilter, run
from kizuna.serving.scoring import Champions, ScoreBook, latest_vectors


@pytest.fixture(scope="module")
def parts(trained_home):
    return Champions.load(trained_home), latest_vectors(trained_home)


def scored_ids(book: ScoreBook, n: int) -> list[str]:
    table = book.table
    return table.loc[table["consent_profiling"].fillna(True).astype(bool), "customer_id"][
        :n
    ].tolist()


def test_the_book_is_ready_before_its_reasons_and_explains_on_request(parts) -> None:
    champions, frame = parts
    lazy = ScoreBook(champions, frame, datetime.now(UTC))
    assert len(lazy) == len(frame) and lazy.reasons_share() == 0.0
    filled = ScoreBook(champions, frame, lazy.built_at)
    assert filled.fill_reasons(chunk=500) == len(frame)
    assert filled.reasons_share() == 1.0
    ids = scored_ids(lazy, 40)
    # On the spot or in the background pass: the same record, reasons included.
    for customer in ids:
        assert lazy.score(customer) == filled.score(customer)
    assert all(lazy.score(c)["reasons"] for c in ids)
    assert 0 < lazy.reasons_share() < 0.05
    # The background pass skips the ones already explained.
    explained = round(lazy.reasons_share() * len(frame))
    assert lazy.fill_reasons() == len(frame) - explained


def test_a_closed_book_stops_filling_reasons(parts) -> None:
    champions, frame = parts
    book = ScoreBook(champions, frame, datetime.now(UTC))
    book.close()
    assert book.fill_reasons() == 0 and book.reasons_share() == 0.0


def test_an_update_rescores_its_customers_and_keeps_the_others(parts) -> None:
    champions, frame = parts
    book = ScoreBook(champions, frame, datetime.now(UTC))
    table = book.table[book.table["consent_profiling"].fillna(True).astype(bool)]
    changed = table.sort_values("churn_probability")["customer_id"].iloc[-1]
    other = scored_ids(book, 1)[0]
    before_changed = book.score(changed)
    before_other_json = book.score_json(other)
    row = frame[frame["customer_id"] == changed].copy()
    # The riskiest customer just ordered, and often.
    row["days_since_last_order"] = row["days_since_last_order_now"] = 0.0
    row["order_count_90d"] = row["order_count_90d"].fillna(0) + 5
    book.update(row, datetime.now(UTC))
    after = book.score(changed)
    assert after["churn"]["probability"] < before_changed["churn"]["probability"]
    assert any(r.startswith("no order for") for r in before_changed["reasons"])
    # Explained from the new row: the old recency is no reason any more (a recency reason,
    # if any is left, reads the new value).
    stale = [r for r in before_changed["reasons"] if r.startswith("no order for")]
    assert not set(stale) & set(after["reasons"])
    # A recency reason left reads the new value: an order today, never "for 0 days".
    assert not [r for r in after["reasons"] if r.startswith("no order for")]
    assert not [r for r in after["reasons"] if re.search(r"\b0 days", r)]
    assert len(book) == len(frame) and len(book.table) == len(frame)
    assert book.table["customer_id"].is_unique
    assert book.score_json(other) == before_other_json
    assert json.loads(book.score_json(changed)) == after
    # A new customer joins the book.
    newcomer = row.assign(customer_id="brand-new")
    book.update(newcomer, datetime.now(UTC))
    assert len(book) == len(frame) + 1
    assert book.score("brand-new")["cold_start"] is False


def test_layered_and_folded_updates_equal_a_book_built_from_the_final_features(parts) -> None:
    champions, frame = parts
    now = datetime.now(UTC)
    book = ScoreBook(champions, frame, now)
    book.FOLD_MIN, book.FOLD_SHARE = 60, 0.0  # the third batch folds the layer in
    for first in (0, 30, 100):  # overlapping batches
        batch = frame.iloc[first : first + 50]
        book.update(batch.assign(days_since_last_order=1.0, days_since_last_order_now=1.0), now)
    final = frame.copy()
    updated = list(range(0, 80)) + list(range(100, 150))
    final.loc[final.index[updated], ["days_since_last_order", "days_since_last_order_now"]] = 1.0
    oracle = ScoreBook(champions, final, now)
    assert len(book) == len(oracle) == len(frame)
    for customer in frame["customer_id"].iloc[:200]:
        assert book.score(customer) == oracle.score(customer)
        assert book.offer_inputs(customer) == oracle.offer_inputs(customer)
    by_id = ["customer_id"]
    pd.testing.assert_frame_equal(
        book.table.sort_values(by_id).reset_index(drop=True),
        oracle.table.sort_values(by_id).reset_index(drop=True),
    )
    unchanged = ScoreBook(champions, frame, now).table["churn_probability"].to_numpy()
    assert (oracle.table["churn_probability"].to_numpy()[updated] != unchanged[updated]).any()


def test_timing_dates_the_median_and_flags_the_unlikely_and_the_overdue(parts) -> None:
    champions, frame = parts
    # Built when the features were computed: "within 14 days" counts from then.
    book = ScoreBook(champions, frame, frame["event_timestamp"].max().to_pydatetime())
    table = book.table.merge(frame[["customer_id", "gap_median_days"]], on="customer_id")
    unlikely = table["buy_unlikely_within_horizon"].astype(bool)
    assert 0 < unlikely.mean() < 1
    # The median as a moment; none beyond the 90-day horizon (no extrapolated dates).
    at = table["expected_next_purchase_at"]
    assert at[unlikely].isna().all() and at[~unlikely].notna().all()
    days = (at - table["features_at"]).dt.total_seconds() / 86_400
    np.testing.assert_allclose(
        days[~unlikely], table.loc[~unlikely, "median_days_to_next_purchase"], rtol=1e-9
    )
    assert (days[~unlikely] <= 90).all()
    assert (table.loc[~unlikely, "expected_next_purchase_p25_at"] <= at[~unlikely]).all()
    late = table["expected_next_purchase_p75_at"]
    assert (late[late.notna()] >= at[late.notna()]).all() and late[unlikely].isna().all()
    # Overdue: past the customer's own median gap, unknown without one.
    has_gap = table["gap_median_days"].notna()
    past = table["days_since_last_order"] > table["gap_median_days"]
    assert table.loc[~has_gap, "overdue"].isna().all()
    assert table.loc[has_gap, "overdue"].tolist() == past[has_gap].tolist()
    assert 0 < past[has_gap].mean() < 1
    scored = table["consent_profiling"].fillna(True).astype(bool)
    for flagged in (True, False):
        row = table[scored & (unlikely == flagged) & has_gap].iloc[0]
        record = json.loads(book.score_json(row["customer_id"]))["repurchase"]
        assert record["unlikely_within_days"] == (90 if flagged else None)
        assert record["expected_date"] == (None if flagged else f"{at[row.name]:%Y-%m-%d}")
        assert record["overdue"] is bool(row["days_since_last_order"] > row["gap_median_days"])
    # Due: the median within 14 days, or overdue and still likely within 90 days.
    due = run(book, "due-to-repurchase", ListFilter(limit=100_000), within_days=14).rows
    soon = at <= pd.Timestamp(book.built_at + timedelta(days=14))
    overdue_likely = table["overdue"].eq(True) & ~unlikely
    assert set(due["customer_id"]) == set(
        table.loc[scored & (soon | overdue_likely), "customer_id"]
    )
    assert (scored & overdue_likely).any() and (scored & soon).any()
    assert due["expected_next_purchase_date"].notna().all()
    assert due["unlikely_within_days"].isna().all()
