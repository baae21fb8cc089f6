"""The data scientist's loop in one call: new snapshots -> Feast -> train -> gate.

``kizuna retrain`` ingests any new files first (kizuna.cli), then calls :func:`retrain`:

1. snapshots for the cutoffs after the latest one built, every ``every_days`` up to the
   day after the newest order or event (that last one always rebuilt, since it sees data
   that arrived since);
2. ``feast apply`` and a materialize, so the online store holds them;
3. every model trained, evaluated against its baselines and put through the gate (a model
   the data cannot train is skipped with its reason; the others still train).

A running ``kizuna serve`` polls the registry every ``KIZUNA_MODEL_POLL_SECONDS`` and swaps
in new champions without a restart; a challenger changes nothing it serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from kizuna.features.compute import Tables, build_feature_files, cutoff_range, default_cutoff
from kizuna.features.ingest import connect
from kizuna.features.lake import Lake
from kizuna.features.store import apply, materialize
from kizuna.settings import Settings
from kizuna.training.models import MODEL_NAMES
from kizuna.training.runs import Skipped, Trained, train_and_register
from kizuna.training.trainer import TrainConfig, TrainingError, snapshot_cutoffs


@dataclass(frozen=True)
class RetrainReport:
    """What a retrain built and what the gate decided."""

    built: list[datetime]
    online_until: datetime
    trained: list[Trained]
    skipped: list[Skipped]


def new_cutoffs(settings: Settings, every_days: int) -> list[datetime]:
    """The cutoffs to build: after the latest snapshot (or the first order, on a lake
    without snapshots), every ``every_days``, and the day after the newest data."""
    con = connect(settings)
    tables = Tables.from_lake(Lake(settings))
    latest = default_cutoff(tables, con)
    try:
        have = snapshot_cutoffs(con, settings)
    except TrainingError:  # a fresh lake: the whole history, as `features build --every`
        have = []
    step = timedelta(days=every_days)
    if have:
        first = (max(have) + step).date()
    else:
        (start,) = con.execute(f"SELECT min(ordered_at) FROM {tables.orders}").fetchone()
        first = ((start or latest) + step).date()
    grid = cutoff_range(first, latest.date(), step) if first <= latest.date() else []
    return sorted({*grid, latest})


def retrain(
    settings: Settings,
    every_days: int = 7,
    models: Sequence[str] = MODEL_NAMES,
    config: TrainConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> RetrainReport:
    """New snapshots, the online store brought up to date, and ``models`` retrained and
    gated. Raises FeatureBuildError or TrainingError with what to do when the lake holds
    nothing to build on."""
    say = progress or (lambda _line: None)
    built = new_cutoffs(settings, every_days)
    say(
        f"building {len(built)} snapshot(s): "
        + ", ".join(f"{c:%Y-%m-%d}" for c in built[:6])
        + (" ..." if len(built) > 6 else "")
    )
    build_feature_files(settings, built)
    say("registering with Feast and loading the online store")
    apply(settings)
    # Whole, not incremental: Feast starts an incremental run at now - TTL at the earliest,
    # so snapshots of a history older than the TTL would never load.
    _, until = materialize(settings)
    trained, skipped = train_and_register(
        settings, models, config=config, progress=say, keep_going=True
    )
    return RetrainReport(built, until, trained, skipped)
