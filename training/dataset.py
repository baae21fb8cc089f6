"""Training sets: Feast point-in-time features joined with the labels after each cutoff.

Every model trains on rows of (customer, cutoff) or (exposure, send time). Features come
from the Feast offline store through a FeatureService (``get_historical_features``), so a
model sees exactly the columns serving will give it; labels come from the lake
(kizuna.training.labels). :func:`time_split` assigns whole cutoffs to train, validation
and test so that no label window of an earlier part reaches into a later part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from kizuna.features.compute import Tables
from kizuna.features.store import open_store, service_features, training_frame
from kizuna.settings import Settings
from kizuna.training.labels import LabelError, offer_response_frame, outcome_frame

KEYS = ["customer_id", "event_timestamp"]


def features_of(settings: Settings, service: str) -> list[str]:
    """The feature names (without view prefix) a FeatureService serves, in its order."""
    return [ref.split(":")[1] for ref in service_features(open_store(settings), service)]


def outcome_training_frame(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    service: str,
    cutoffs: Sequence[datetime],
    churn_horizon_days: int,
    value_days: int = 365,
    truncate: bool = False,
) -> pd.DataFrame:
    """Features of ``service`` at each cutoff plus the outcome labels after it.

    One row per customer with an order at or before the cutoff; label columns as in
    :func:`kizuna.training.labels.outcome_frame` (nullable where the window runs past
    the data, or cut at its end with ``truncate``). The snapshots of ``cutoffs`` must have
    been built and applied.
    """
    labels = outcome_frame(con, tables, cutoffs, churn_horizon_days, value_days, truncate)
    labels = allowing_profiling(con, tables, labels)
    feats = training_frame(settings, labels[KEYS], service)
    return feats.merge(labels, on=KEYS, how="inner").reset_index(drop=True)


def exposure_training_frame(
    settings: Settings,
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    service: str = "offers_v1",
    window_days: int = 14,
) -> pd.DataFrame:
    """One row per exposure (treated or control) with the features as of its send time.

    Columns: the keys (``event_timestamp`` = sent_at), ``exposure_id``, ``offer_id`` (null
    for control), ``channel``, ``propensity``, ``purchased`` and the service's features.
    """
    exposures = offer_response_frame(con, tables, window_days)
    if exposures.empty:
        raise LabelError(
            "no exposures whose response window has closed; ingest campaign exposures "
            "(with a control group) to train the offer model"
        )
    exposures = allowing_profiling(con, tables, exposures)
    feats = training_frame(settings, exposures[KEYS].drop_duplicates(), service)
    return exposures.merge(feats, on=KEYS, how="left").reset_index(drop=True)


def allowing_profiling(
    con: duckdb.DuckDBPyConnection, tables: Tables, rows: pd.DataFrame
) -> pd.DataFrame:
    """``rows`` without those of customers who had opted out of profiling at the row's
    ``event_timestamp`` (their customer row's ``consent_profiling`` overlaid with its latest
    change by then; empty means allowed): an opt-out is in no training set from the moment
    it was given."""
    keys = rows[KEYS].drop_duplicates()
    con.register("_profiling_rows", keys)
    try:
        refused = con.execute(
            f"""
            SELECT r.customer_id, r.event_timestamp FROM _profiling_rows r
            LEFT JOIN (SELECT DISTINCT ON (customer_id) customer_id, consent_profiling
                       FROM {tables.customers}) c USING (customer_id)
            WHERE NOT coalesce(
                (SELECT arg_max(p.consent_profiling, p.changed_at)
                 FROM {tables.profile_changes} p
                 WHERE p.customer_id = r.customer_id AND p.changed_at <= r.event_timestamp
                   AND p.consent_profiling IS NOT NULL),
                c.consent_profiling, true)
            """
        ).df()
    finally:
        con.unregister("_profiling_rows")
    if refused.empty:
        return rows
    refused["_refused"] = True
    marked = rows.merge(refused, on=KEYS, how="left")
    return rows[marked["_refused"].isna().to_numpy()].reset_index(drop=True)


#: The two ways cutoffs are split (TimeSplit.scheme).
APART, EXPANDING = "windows apart", "expanding windows"
#: Fewest training cutoffs the windows-apart scheme must leave before expanding is used.
MIN_TRAIN_CUTOFFS = 3


@dataclass(frozen=True)
class TimeSplit:
    """Whole cutoffs per part, and how their labels are kept from the later parts.

    ``windows apart``: each part's label windows end before the next part starts.
    ``expanding windows`` (short histories): there is no validation part in time; the
    training labels are cut at the test cutoff (``train_label_end``), so no training label
    sees the test period, and validation is a customer-grouped share of the training rows;
    the deployed model is refitted on ``refit`` (every cutoff, labels cut at the data end).
    """

    train: list[datetime]
    valid: list[datetime]
    test: list[datetime]
    label_days: int
    scheme: str = APART
    reason: str = ""
    train_label_end: datetime | None = None
    refit: list[datetime] = field(default_factory=list)

    def part(self, frame: pd.DataFrame, name: str, column: str = "event_timestamp"):
        """The rows of ``frame`` whose cutoff belongs to part ``name``."""
        moments = pd.to_datetime(pd.Series(getattr(self, name)), utc=True)
        return frame[pd.to_datetime(frame[column], utc=True).isin(moments)]


def time_split(
    cutoffs: Sequence[datetime], label_days: int, data_end: datetime, valid: int = 1
) -> TimeSplit:
    """Split labelled cutoffs in time: test is the latest cutoff whose label window has
    closed; validation the ``valid`` latest cutoffs whose windows close by the test cutoff;
    training every cutoff whose window closes by the first validation cutoff.

    Raises:
        LabelError: when the cutoffs do not span three label windows; the message says how
            much more history is needed.
    """
    window = timedelta(days=label_days)
    labelled = sorted(c for c in set(cutoffs) if c + window <= data_end)
    if not labelled:
        raise LabelError(
            f"no cutoff has a closed {label_days}-day label window before the end of the data "
            f"({data_end:%Y-%m-%d}); build snapshots earlier or use a shorter horizon"
        )
    test = labelled[-1]
    valid_cuts = [c for c in labelled if c + window <= test][-valid:]
    train = [c for c in labelled if valid_cuts and c + window <= valid_cuts[0]]
    if not valid_cuts or not train:
        span = (labelled[-1] - labelled[0]).days
        raise LabelError(
            f"a {label_days}-day label window needs cutoffs spanning at least "
            f"{2 * label_days} days (train, then validation, then test, windows apart); "
            f"the labelled cutoffs span {span} days. Build snapshots further back "
            "(kizuna features build --every 7d --from ...) or use a shorter horizon"
        )
    return TimeSplit(
        train=train,
        valid=valid_cuts,
        test=[test],
        label_days=label_days,
        reason=f"{len(train)} training cutoffs fit with {label_days}-day windows apart",
    )


def expanding_split(
    cutoffs: Sequence[datetime], label_days: int, data_end: datetime, min_label_days: int
) -> TimeSplit:
    """The short-history split: every cutoff trains, on labels cut at the test cutoff.

    Test is the latest cutoff whose full window has closed, or, when none has, the latest
    whose window holds ``min_label_days`` (its label then covers fewer days, which the
    reason says). Training takes every earlier cutoff at least ``min_label_days`` before
    the test cutoff; their windows are cut there (``train_label_end``). Refit takes every
    cutoff at least ``min_label_days`` before the end of the data.

    Raises:
        LabelError: when not even that fits; the message says how much history is needed.
    """
    least = timedelta(days=min_label_days)
    ordered = sorted(set(cutoffs))
    full = [c for c in ordered if c + timedelta(days=label_days) <= data_end]
    some = [c for c in ordered if c + least <= data_end]
    test = full[-1] if full else (some[-1] if some else None)
    train = [c for c in ordered if test is not None and c + least <= test]
    if test is None or not train:
        raise LabelError(
            f"no two cutoffs lie {min_label_days}+ days apart before the end of the data "
            f"({data_end:%Y-%m-%d}); build weekly snapshots (kizuna features build --every "
            "7d --from <first order date>) or ingest a longer history"
        )
    closed = "closed" if full else f"truncated to {(data_end - test).days} days"
    reason = (
        f"the data cannot hold train, validation and test {label_days}-day windows apart "
        f"with {MIN_TRAIN_CUTOFFS}+ training cutoffs: {len(train)} expanding cutoffs train "
        f"on labels cut at the test cutoff {test:%Y-%m-%d} (its window {closed}), "
        "validation is a customer-grouped 20% of their rows, and the deployed model is "
        "refitted on every cutoff, labels cut at the end of the data"
    )
    return TimeSplit(
        train=train,
        valid=[],
        test=[test],
        label_days=label_days,
        scheme=EXPANDING,
        reason=reason,
        train_label_end=test,
        refit=some,
    )


def choose_split(
    cutoffs: Sequence[datetime],
    label_days: int,
    data_end: datetime,
    scheme: str = "auto",
    min_label_days: int | None = None,
) -> TimeSplit:
    """Windows apart where the history holds it with enough training cutoffs (or when
    ``scheme`` says so), expanding windows otherwise (``scheme``: auto, apart, expanding)."""
    least = min_label_days or max(7, min(28, label_days // 3))
    if scheme == "expanding":
        return expanding_split(cutoffs, label_days, data_end, least)
    try:
        split = time_split(cutoffs, label_days, data_end)
    except LabelError:
        if scheme == "apart":
            raise
        return expanding_split(cutoffs, label_days, data_end, least)
    if scheme == "auto" and len(split.train) < MIN_TRAIN_CUTOFFS:
        return expanding_split(cutoffs, label_days, data_end, least)
    return split


def customer_split(
    frame: pd.DataFrame, valid_share: float = 0.2, seed: int = 7
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training and validation rows split by customer (all cutoffs of a customer on one
    side), so one customer's overlapping windows never validate each other."""
    customers = np.sort(frame["customer_id"].astype(str).unique())
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(customers, size=round(valid_share * len(customers)), replace=False))
    in_valid = frame["customer_id"].astype(str).isin(chosen)
    return frame[~in_valid], frame[in_valid]


def send_split(
    moments: Sequence[datetime], label_days: int, valid_sends: int = 6, test_sends: int = 18
) -> TimeSplit:
    """Split exposures by campaign send day: the latest ``test_sends`` send days for test,
    ``valid_sends`` before them for validation, the rest for training, each part's response
    windows closed before the next part's first send. Every exposure of a day stays in the
    same part; the parts hold the exact send times.

    Raises:
        LabelError: with too few send days for the three parts.
    """
    window = timedelta(days=label_days)
    by_day: dict = {}
    for m in moments:
        by_day.setdefault(m.date(), []).append(m)
    days = sorted(by_day)
    first = {d: min(by_day[d]) for d in days}
    last = {d: max(by_day[d]) for d in days}
    test_days = days[-test_sends:]
    valid_days = [d for d in days if last[d] + window <= first[test_days[0]]][-valid_sends:]
    train_days = [d for d in days if valid_days and last[d] + window <= first[valid_days[0]]]
    if len(days) < test_sends + valid_sends + 1 or not valid_days or not train_days:
        raise LabelError(
            f"{len(days)} send days cannot give {test_sends} test and {valid_sends} validation "
            "send days and earlier ones to train on; ingest more campaigns"
        )

    def moments_of(part: list) -> list[datetime]:
        return sorted(m for d in part for m in by_day[d])

    return TimeSplit(
        train=moments_of(train_days),
        valid=moments_of(valid_days),
        test=moments_of(test_days),
        label_days=label_days,
        reason=(
            f"whole campaign send days: {len(train_days)} train, {len(valid_days)} validate, "
            f"the latest {len(test_days)} test, {label_days}-day response windows apart"
        ),
    )


class LeakageError(LabelError):
    """A split would let a model learn from outcomes inside its own holdout."""


def check_no_leakage(split: TimeSplit) -> None:
    """The guard every training run passes: each part's label windows close before the
    next part's first cutoff, so no training or validation label reaches into the period
    the model is judged on.

    Raises:
        LeakageError: naming the overlapping parts and by how much.
    """
    window = timedelta(days=split.label_days)
    if split.scheme == EXPANDING:
        if split.train_label_end is None or split.train_label_end > min(split.test):
            raise LeakageError(
                "an expanding split must cut its training labels at the test cutoff "
                f"{min(split.test):%Y-%m-%d}; they end at {split.train_label_end}"
            )
        if max(split.train) >= min(split.test):
            raise LeakageError("a training cutoff lies at or after the test cutoff")
        return
    for earlier, later in (("train", "valid"), ("valid", "test")):
        last, first = max(getattr(split, earlier)), min(getattr(split, later))
        if last + window > first:
            overlap = (last + window - first).days
            raise LeakageError(
                f"the {earlier} labels of {last:%Y-%m-%d} look {split.label_days} days ahead, "
                f"{overlap} days into the {later} part starting {first:%Y-%m-%d}; split with "
                "time_split() or send_split(), which keep label windows apart"
            )
