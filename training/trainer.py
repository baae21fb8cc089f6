"""The shared trainer: one path from snapshots and labels to a fitted, evaluated model.

For every model alike: read its FeatureService's point-in-time frame, label it, split the
cutoffs in time (train → validation → test, label windows apart), fit, and score the model
and its baselines on the same held-out cutoff. What differs per model (label window,
estimator, metrics, baselines, plots) is its spec (kizuna.training.models) and its own
module; MLflow logging lives in registry.py.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from kizuna.features.compute import Tables, snapshots_dir
from kizuna.features.ingest import connect
from kizuna.features.lake import MANIFEST, Lake
from kizuna.settings import Settings
from kizuna.training.dataset import (
    EXPANDING,
    TimeSplit,
    check_no_leakage,
    choose_split,
    customer_split,
    exposure_training_frame,
    features_of,
    outcome_training_frame,
    send_split,
)
from kizuna.training.labels import (
    ChurnHorizon,
    LabelError,
    data_end,
    default_churn_horizon,
)
from kizuna.training.models import MODEL_NAMES, SEND, ModelSpec, UnknownModelError
from kizuna.training.models import spec as _spec

log = logging.getLogger(__name__)

__all__ = ["MODEL_NAMES", "TrainConfig", "TrainingData", "TrainingError", "train"]


class TrainingError(ValueError):
    """A model cannot be trained on this data; the message says what to change."""


def model_spec(name: str) -> ModelSpec:
    """Model ``name``'s spec; a TrainingError naming the models for an unknown one."""
    try:
        return _spec(name)
    except UnknownModelError as exc:
        raise TrainingError(str(exc)) from None


def model_class(name: str) -> type:
    return model_spec(name).cls


@dataclass(frozen=True)
class TrainConfig:
    """What a data scientist sets for a training run; all of it is logged with the model.

    Args:
        seed: LightGBM's seed.
        churn_horizon_days: H of the churn label; None derives it from the data.
        value_days: the value label's window (spend in the next ``value_days``).
        offer_window_days: a purchase this many days after an exposure is a response.
        max_train_cutoffs: train on at most this many of the latest training cutoffs.
        n_jobs: LightGBM threads. One by default: on a small or shared machine LightGBM's
            own default (every core, spinning while it waits) is often many times slower.
        split_scheme: ``auto`` (windows apart where the history holds them, expanding
            windows otherwise), ``apart`` or ``expanding`` (kizuna.training.dataset).
        refit: with expanding windows, refit the deployed model on every cutoff whose
            window has (partly) closed, after the held-out evaluation.
    """

    seed: int = 7
    churn_horizon_days: int | None = None
    value_days: int = 365
    offer_window_days: int = 14
    max_train_cutoffs: int = 12
    n_jobs: int | None = 1
    split_scheme: str = "auto"
    refit: bool = True


#: Value windows tried, longest first, when the configured one does not fit the history.
VALUE_WINDOWS = (365, 180, 120, 90, 60, 30)


def fitting_value_days(wanted: int, history_days: float) -> tuple[int, str]:
    """The value window: ``wanted`` when the history is about as long (within a week;
    expanding windows then train on shorter windows, carried to the full one by the BG/NBD
    offset), else the longest of :data:`VALUE_WINDOWS` up to half the history, with why."""
    if wanted <= history_days + 7:
        return wanted, ""
    fits = [w for w in VALUE_WINDOWS if w < wanted and 2 * w <= history_days]
    days = fits[0] if fits else min(VALUE_WINDOWS)
    return days, (
        f"value window {days} days instead of {wanted}: the data hold {history_days:.0f} days, "
        "too few to observe a single window of that length"
    )


def restrict_tables(tables: Tables, until: datetime) -> Tables:
    """The tables as they were at ``until``: nothing that happened after it."""
    at = f"TIMESTAMPTZ '{until.isoformat()}'"
    return Tables(
        customers=tables.customers,
        orders=f"(SELECT * FROM {tables.orders} WHERE ordered_at <= {at})",
        order_lines=(
            f"(SELECT l.* FROM {tables.order_lines} l SEMI JOIN {tables.orders} o "
            f"ON l.order_id = o.order_id AND o.ordered_at <= {at})"
        ),
        events=f"(SELECT * FROM {tables.events} WHERE occurred_at <= {at})",
        offers=tables.offers,
        exposures=f"(SELECT * FROM {tables.exposures} WHERE sent_at <= {at})",
        profile_changes=f"(SELECT * FROM {tables.profile_changes} WHERE changed_at <= {at})",
    )


def snapshot_cutoffs(con: duckdb.DuckDBPyConnection, settings: Settings) -> list[datetime]:
    """The cutoffs the feature snapshot files hold (every view has the same ones)."""
    path = snapshots_dir(settings) / "customer_purchases.parquet"
    if not path.exists():
        raise TrainingError(
            f"no feature snapshots in {path.parent}; run `kizuna features build --every 7d` "
            "and `kizuna features apply` first"
        )
    rows = con.execute(
        f"SELECT DISTINCT event_timestamp FROM read_parquet('{path}') ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def snapshot_id(settings: Settings, cutoffs: list[datetime]) -> str:
    """Names the data a model saw: the lake's manifest and the snapshot cutoffs."""
    digest = hashlib.sha256()
    manifest = settings.lake_dir / MANIFEST
    digest.update(manifest.read_bytes() if manifest.exists() else b"")
    digest.update(",".join(c.isoformat() for c in cutoffs).encode())
    return f"{digest.hexdigest()[:12]}@{max(cutoffs):%Y-%m-%d}"


@dataclass
class TrainingData:
    """The lake, snapshots and labels a run trains on, with frames cached per service.

    ``until`` cuts the data at a moment (for backtests): labels then use nothing after it,
    and only snapshots at or before it are used.
    """

    settings: Settings
    con: duckdb.DuckDBPyConnection
    tables: Tables
    end: datetime
    horizon: ChurnHorizon
    cutoffs: list[datetime]
    snapshot: str
    config: TrainConfig
    value_days: int = 365
    #: Per model, why its label window differs from the configured one.
    window_notes: dict[str, str] = field(default_factory=dict)
    _frames: dict[tuple, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def open(
        cls, settings: Settings, config: TrainConfig, until: datetime | None = None
    ) -> TrainingData:
        con = connect(settings)
        tables = Tables.from_lake(Lake(settings))
        cutoffs = snapshot_cutoffs(con, settings)
        if until is not None:
            tables = restrict_tables(tables, until)
            cutoffs = [c for c in cutoffs if c <= until]
        end = data_end(con, tables)
        if config.churn_horizon_days:
            horizon = ChurnHorizon(days=config.churn_horizon_days, percentile=float("nan"), gaps=0)
        else:
            horizon = default_churn_horizon(con, tables)
        (start,) = con.execute(f"SELECT min(ordered_at) FROM {tables.orders}").fetchone()
        history = (end - start).total_seconds() / 86_400 if start is not None else 0.0
        value_days, why = fitting_value_days(config.value_days, history)
        return cls(
            settings=settings,
            con=con,
            tables=tables,
            end=end,
            horizon=horizon,
            cutoffs=cutoffs,
            snapshot=snapshot_id(settings, cutoffs),
            config=config,
            value_days=value_days,
            window_notes={"value": why} if why else {},
        )

    def label_days(self, name: str) -> int:
        """How long after a cutoff model ``name``'s label looks."""
        return model_spec(name).label_days(self)

    def frame(
        self,
        name: str,
        cutoffs: list[datetime] | None = None,
        label_end: datetime | None = None,
        truncate: bool = False,
    ) -> pd.DataFrame:
        """Model ``name``'s rows: features of its service and its labels.

        ``cutoffs`` limits the rows to those cutoffs (all snapshot cutoffs by default);
        the offer model's rows are every exposure whose response window has closed.
        ``label_end`` labels as if the data ended then; ``truncate`` cuts windows that run
        past the end instead of leaving them unlabelled (expanding windows).
        """
        spec = model_spec(name)
        service = spec.service
        if spec.unit == SEND:
            key: tuple = ("exposures", self.config.offer_window_days)
            if key not in self._frames:
                self._frames[key] = exposure_training_frame(
                    self.settings,
                    self.con,
                    self.tables,
                    service,
                    window_days=self.config.offer_window_days,
                )
            return self._frames[key]
        moments = tuple(sorted(cutoffs if cutoffs is not None else self.cutoffs))
        key = (service, moments, label_end, truncate)
        if key not in self._frames:
            tables = self.tables if label_end is None else restrict_tables(self.tables, label_end)
            self._frames[key] = outcome_training_frame(
                self.settings,
                self.con,
                tables,
                service,
                list(moments),
                self.horizon.days,
                value_days=self.value_days,
                truncate=truncate,
            )
        return self._frames[key]

    def split(self, name: str) -> TimeSplit:
        """Model ``name``'s time-ordered split of its cutoffs (send times for offers)."""
        spec = model_spec(name)
        days = spec.label_days(self)
        try:
            if spec.unit == SEND:
                sent = pd.to_datetime(self.frame(name)["event_timestamp"], utc=True)
                # Whole campaigns per part: a send's exposures spread over hours.
                split = send_split(sorted({m.to_pydatetime() for m in sent}), days)
            else:
                split = choose_split(self.cutoffs, days, self.end, self.config.split_scheme)
        except LabelError as exc:
            raise TrainingError(f"{name}: {exc}{spec.split_hint}") from exc
        keep = self.config.max_train_cutoffs
        if keep and len(split.train) > keep and spec.unit != SEND:
            if split.scheme == EXPANDING:
                # Spread over the history: the early cutoffs carry the long windows.
                split = replace(
                    split, train=_spread(split.train, keep), refit=_spread(split.refit, keep)
                )
            else:
                split = replace(split, train=split.train[-keep:])
        return split


def _spread(moments: list[datetime], keep: int) -> list[datetime]:
    """At most ``keep`` of ``moments``, evenly spaced, the latest always among them."""
    if len(moments) <= keep:
        return moments
    step = (len(moments) - 1) / (keep - 1) if keep > 1 else 0
    return sorted({moments[len(moments) - 1 - round(i * step)] for i in range(keep)})


@dataclass
class TrainResult:
    """A fitted model, what it was trained on, and its held-out evaluation."""

    name: str
    model: Any
    features: list[str]
    split: TimeSplit
    evaluation: pd.DataFrame
    test: pd.DataFrame
    params: dict[str, Any]


def evaluate(
    name: str, model: Any, test: pd.DataFrame, churn_model: Any | None = None
) -> pd.DataFrame:
    """Model ``name``'s evaluation table (the model and its baselines) on ``test``.

    ``churn_model`` feeds the "offer everyone at high churn risk" baseline of a model whose
    spec ``needs_churn_risk`` (skipped without one)."""
    spec = model_spec(name)
    extra: dict[str, Any] = {}
    if spec.needs_churn_risk and churn_model is not None:
        extra["churn_risk"] = churn_model.predict_proba(test)
    return spec.module.evaluate(model, test, **extra)


def with_btyd(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    name: str,
    table: pd.DataFrame,
    test: pd.DataFrame,
    label_days: int,
) -> pd.DataFrame:
    """``table`` with the BG/NBD baselines' rows, fitted on data up to the test cutoff."""
    from kizuna.training.baselines import btyd_rows

    if model_spec(name).baselines is None or test.empty:
        return table
    cutoff = pd.Timestamp(test["event_timestamp"].max()).to_pydatetime()
    rows = btyd_rows(con, restrict_tables(tables, cutoff), name, test, label_days)
    notes = dict(rows.attrs.get("baseline_notes", {}))
    table = pd.concat([table, rows]) if not rows.empty else table
    # A baseline that could not be fitted keeps its row (NaN) and says why here.
    table.attrs["baseline_notes"] = notes
    return table


def train(
    data: TrainingData,
    name: str,
    progress: Callable[[str], None] | None = None,
    churn_model: Any | None = None,
) -> TrainResult:
    """Fit model ``name`` on its training cutoffs and evaluate it on the held-out one.

    Args:
        data: the lake, snapshots and labels.
        name: one of MODEL_NAMES.
        progress: called with a short line at each step.
        churn_model: a fitted churn model, for the offers baseline "offer everyone at
            high churn risk" (skipped without one).
    """
    say = progress or (lambda _line: None)
    spec = model_spec(name)
    split = data.split(name)
    check_no_leakage(split)
    say(f"{name}: {split.scheme} ({split.reason})")
    say(f"{name}: reading {spec.service} features and labels")
    # An absolute moment would not carry over to a later cutoff; it serves the request-time
    # recency feature, not the models.
    features = [f for f in features_of(data.settings, spec.service) if f != "last_order_epoch"]
    if split.scheme == EXPANDING:
        rows = data.frame(name, split.train, label_end=split.train_label_end, truncate=True)
        train_rows, valid_rows = customer_split(rows, seed=data.config.seed)
        test_rows = data.frame(name, split.test, truncate=True)
    else:
        frame = data.frame(name, [*split.train, *split.valid, *split.test])
        train_rows, valid_rows = split.part(frame, "train"), split.part(frame, "valid")
        test_rows = split.part(frame, "test")
    moments = len({m.date() for m in split.train})
    say(
        f"{name}: fitting on {len(train_rows):,} rows of {moments} {spec.moments}, "
        f"validating on {len(valid_rows):,}"
    )
    model = spec.new(data)
    model.fit(train_rows, valid_rows, features)
    say(f"{name}: scoring {len(test_rows):,} held-out rows with the baselines")
    table = evaluate(name, model, test_rows, churn_model)
    table = with_btyd(data.con, data.tables, name, table, test_rows, split.label_days)
    refit_rows, fitted_on = 0, [*split.train, *split.valid]
    if split.scheme == EXPANDING and data.config.refit and split.refit:
        rows = data.frame(name, split.refit, truncate=True)
        refit_train, refit_valid = customer_split(rows, seed=data.config.seed)
        say(f"{name}: refitting on {len(rows):,} rows of all {len(split.refit)} cutoffs")
        model = spec.new(data).fit(refit_train, refit_valid, features)
        refit_rows, fitted_on = len(rows), split.refit
    if spec.after_fit is not None:
        spec.after_fit(data, model, fitted_on)
    params = {
        "model": name,
        "feature_service": spec.service,
        "data_snapshot": data.snapshot,
        "seed": data.config.seed,
        "label_days": split.label_days,
        "split_scheme": split.scheme,
        "split_reason": split.reason,
        "churn_horizon_days": data.horizon.days,
        "churn_horizon_percentile": data.horizon.percentile,
        "value_days": data.value_days,
        "offer_window_days": data.config.offer_window_days,
        "train_cutoffs": f"{min(split.train):%Y-%m-%d}..{max(split.train):%Y-%m-%d}",
        "n_train_cutoffs": len(split.train),
        "valid_cutoffs": (
            f"{min(split.valid):%Y-%m-%d}..{max(split.valid):%Y-%m-%d}"
            if split.valid
            else "customer-grouped 20% of the training rows"
        ),
        "test_cutoffs": f"{min(split.test):%Y-%m-%d}..{max(split.test):%Y-%m-%d}",
        "train_rows": len(train_rows),
        "valid_rows": len(valid_rows),
        "test_rows": len(test_rows),
        "refit_rows": refit_rows,
        "n_features": len(features),
    }
    if name in data.window_notes:
        params["window_note"] = data.window_notes[name]
    return TrainResult(name, model, features, split, table, test_rows, params)
