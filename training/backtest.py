"""``kizuna backtest``: train on the past only, score a cutoff, compare with what happened.

Every model is trained as if today were ``cutoff``: its training labels use nothing after
the cutoff (the lake is cut there) and its features come from snapshots at or before it.
Then every customer is scored as of the cutoff and compared with the outcome that the data
after the cutoff shows, side by side with the baselines. Nothing is registered: a backtest
is evidence, not a release. It writes ``scores.parquet`` (one row per customer) and
``metrics.csv`` / ``metrics.txt`` (every model and baseline) to its folder.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from kizuna.features.compute import Tables, build_feature_files, cutoff_range
from kizuna.features.lake import Lake
from kizuna.settings import Settings
from kizuna.training.dataset import KEYS, exposure_training_frame, outcome_training_frame
from kizuna.training.labels import LabelError, data_end
from kizuna.training.models import CHURN_RISK_FROM, CUTOFF, MODEL_NAMES, SEND, SPECS, spec
from kizuna.training.trainer import (
    TrainConfig,
    TrainingData,
    TrainingError,
    TrainResult,
    evaluate,
    snapshot_cutoffs,
    train,
    with_btyd,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestReport:
    """Where a backtest wrote its files and what it found."""

    folder: Path
    cutoff: datetime
    metrics: pd.DataFrame
    scores: pd.DataFrame
    notes: list[str]


def _ensure_snapshots(settings: Settings, data_start: datetime, cutoff: datetime, every: int):
    """A snapshot at the cutoff, and training snapshots every ``every`` days before it
    where fewer than half of those exist; then the Feast registry is brought up to date
    (a fresh ingest has never been applied)."""
    from kizuna.features.store import apply

    have = set(snapshot_cutoffs_or_none(settings))
    wanted = [cutoff]
    first, last = (data_start + timedelta(days=every)).date(), cutoff.date()
    grid = cutoff_range(first, last, timedelta(days=every)) if first <= last else []
    if len([c for c in have if c < cutoff]) < len(grid) / 2:
        wanted += grid
    missing = sorted({c for c in wanted if c not in have})
    if missing:
        build_feature_files(settings, missing)
    apply(settings)


def _train_before(past: TrainingData, models, say, notes: list[str]) -> dict[str, TrainResult]:
    """Each of ``models`` trained on ``past``; one that cannot be is a note, not a failure."""
    fitted: dict[str, TrainResult] = {}
    for name in models:
        try:
            churn = fitted.get(CHURN_RISK_FROM)
            fitted[name] = train(
                past, name, progress=say, churn_model=churn.model if churn else None
            )
        except (TrainingError, LabelError) as exc:
            notes.append(f"{name}: not trained: {exc}")
            say(notes[-1])
    return fitted


def _score_at(
    settings: Settings,
    con,
    full: Tables,
    cutoff: datetime,
    past: TrainingData,
    fitted: dict[str, TrainResult],
    say: Callable[[str], None],
    notes: list[str],
) -> tuple[list[pd.DataFrame], pd.DataFrame | None]:
    """Every fitted model scored and evaluated at ``cutoff`` on the full lake: the
    evaluation tables and one frame of scores with the outcomes beside them."""
    horizon, config = past.horizon.days, past.config
    frames: dict[str, pd.DataFrame] = {}
    tables, scores = [], None
    for name, result in fitted.items():
        model_spec = spec(name)
        service = model_spec.service
        if model_spec.unit == SEND:
            rows = exposure_training_frame(settings, con, full, service, config.offer_window_days)
            sent = pd.to_datetime(rows["event_timestamp"], utc=True)
            rows = rows[(sent > cutoff) & (sent <= cutoff + timedelta(days=horizon))]
        else:
            if service not in frames:
                # A window a few days past the end of the data is scored on the days
                # there are (the rows' label_window_days say how many; so do the notes).
                frames[service] = outcome_training_frame(
                    settings, con, full, service, [cutoff], horizon, past.value_days, True
                )
            rows = frames[service]
            predicted = result.model.predict(rows)
            block = pd.concat([rows[KEYS], predicted], axis=1)
            scores = block if scores is None else scores.merge(block, on=KEYS, how="outer")
        churn = fitted.get(CHURN_RISK_FROM)
        try:
            table = evaluate(name, result.model, rows, churn.model if churn else None)
            table = with_btyd(con, full, name, table, rows, result.split.label_days)
        except (ValueError, KeyError) as exc:
            notes.append(f"{name}: not evaluated at the cutoff ({exc}); the outcome is not known")
            say(notes[-1])
            continue
        for scorer, why in table.attrs.get("baseline_notes", {}).items():
            notes.append(f"{name}: baseline {scorer} not fitted: {why}")
            say(notes[-1])
        table.insert(0, "model", name)
        tables.append(table.rename_axis("scorer").reset_index())
    # Every outcome frame holds the same labels; whichever models ran, one of them.
    labels = next(iter(frames.values()), None)
    if scores is not None and labels is not None:
        outcome_columns = [c for s in SPECS.values() if s.unit == CUTOFF for c in s.label_columns]
        present = [c for c in outcome_columns if c in labels.columns]
        scores = scores.merge(labels[[*KEYS, *present]], on=KEYS, how="left")
    return tables, scores


def _write_report(
    out: Path,
    cutoff: datetime,
    past: TrainingData,
    fitted: dict[str, TrainResult],
    notes: list[str],
    metrics: pd.DataFrame,
    scores: pd.DataFrame | None,
) -> None:
    """scores.parquet, metrics.csv / .txt and backtest.json in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (scores if scores is not None else pd.DataFrame()).to_parquet(out / "scores.parquet")
    metrics.to_csv(out / "metrics.csv", index=False, float_format="%.6g")
    (out / "metrics.txt").write_text(
        metrics.to_string(index=False, float_format=lambda v: f"{v:.4f}") + "\n"
    )
    (out / "backtest.json").write_text(
        json.dumps(
            {
                "cutoff": cutoff.isoformat(),
                "churn_horizon_days": past.horizon.days,
                "value_days": past.value_days,
                "split": {n: [r.split.scheme, r.split.reason] for n, r in fitted.items()},
                "models": list(fitted),
                "notes": notes,
                "params": {n: r.params for n, r in fitted.items()},
            },
            indent=2,
            default=str,
        )
    )


def snapshot_cutoffs_or_none(settings: Settings) -> list[datetime]:
    from kizuna.features.ingest import connect

    try:
        return snapshot_cutoffs(connect(settings), settings)
    except TrainingError:
        return []


def backtest(
    settings: Settings,
    cutoff: datetime,
    out: Path,
    config: TrainConfig | None = None,
    models: tuple[str, ...] = MODEL_NAMES,
    every_days: int = 28,
    progress: Callable[[str], None] | None = None,
) -> BacktestReport:
    """Train ``models`` on data before ``cutoff``, score every customer at it, compare.

    Args:
        settings: where the lake and snapshots are.
        cutoff: the moment to stand at (UTC).
        out: the folder to write to (created).
        config: training options; ``churn_horizon_days`` is the horizon of the outcome.
        models: which models to backtest.
        every_days: spacing of the training snapshots built when missing.
        progress: called with a line per step.
    """
    from kizuna.features.ingest import connect

    say = progress or (lambda _line: None)
    config = config or TrainConfig(seed=settings.seed)
    con = connect(settings)
    full = Tables.from_lake(Lake(settings))
    (start,) = con.execute(f"SELECT min(ordered_at) FROM {full.orders}").fetchone()
    if start is None:
        raise TrainingError("the lake has no orders; ingest data first")
    end = data_end(con, full)
    if cutoff <= start or cutoff >= end:
        raise TrainingError(
            f"the cutoff {cutoff:%Y-%m-%d} must lie inside the data "
            f"({start:%Y-%m-%d} .. {end:%Y-%m-%d})"
        )
    say(f"building missing snapshots up to {cutoff:%Y-%m-%d}")
    _ensure_snapshots(settings, start, cutoff, every_days)
    past = TrainingData.open(settings, config, until=cutoff)
    # Snapshots at the cutoff exist but its labels would need the future: train before it.
    past.cutoffs = [c for c in past.cutoffs if c < cutoff]
    horizon = past.horizon.days
    say(f"training on data up to {cutoff:%Y-%m-%d} (churn horizon {horizon} days)")
    notes = list(past.window_notes.values())
    fitted = _train_before(past, models, say, notes)
    left = (end - cutoff).total_seconds() / 86_400
    windows = {n: spec(n).label_days(past) for n in fitted if spec(n).unit == CUTOFF}
    for what, days in windows.items():
        if days > left:
            notes.append(
                f"{what}: the outcome window is cut to {left:.1f} of {days} days: the data "
                f"end {end:%Y-%m-%d %H:%M}"
            )
            say(notes[-1])
    say(f"scoring every customer as of {cutoff:%Y-%m-%d}")
    tables, scores = _score_at(settings, con, full, cutoff, past, fitted, say, notes)
    metrics = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    _write_report(out, cutoff, past, fitted, notes, metrics, scores)
    return BacktestReport(out, cutoff, metrics, scores, notes)
