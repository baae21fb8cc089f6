"""``kizuna train``, ``kizuna models ...`` and ``kizuna backtest``."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from kizuna.console import console, err, fail
from kizuna.settings import get_settings
from kizuna.training.models import MODEL_NAMES

models_app = typer.Typer(
    help="List registered model versions, promote one by hand, or roll back.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

MODEL_CHOICES = (*MODEL_NAMES, "all")


def chosen_models(model: str) -> tuple[str, ...]:
    """The models a command's MODEL argument names ("all": every one), or a clear error."""
    if model not in MODEL_CHOICES:
        fail(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
    return MODEL_NAMES if model == "all" else (model,)


def retrain_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="New files or folders to ingest first (as `kizuna ingest`)."),
    ] = None,
    every: Annotated[
        str, typer.Option(help="Spacing of the new snapshots, in days (e.g. 7d).")
    ] = "7d",
    model: Annotated[str, typer.Option(help="churn, repurchase, value, offers or all.")] = "all",
) -> None:
    """The whole loop in one command: ingest new files, build the snapshots since the
    last one, update Feast's online store, retrain, evaluate against the baselines and
    gate. A running `kizuna serve` swaps in new champions within
    KIZUNA_MODEL_POLL_SECONDS, without a restart; challengers change nothing it serves.
    Exit code 0 when at least one model trained (a model the data cannot train is
    skipped with its reason), 2 otherwise. docs/operations.md shows it under cron.

    Examples:

        kizuna retrain exports/2026-12-04/

        kizuna retrain --every 7d --model churn
    """
    from kizuna.cli_features import parse_every
    from kizuna.features.compute import FeatureBuildError
    from kizuna.features.store import FeatureStoreError
    from kizuna.training.retrain import retrain
    from kizuna.training.trainer import TrainingError

    names = chosen_models(model)
    days = parse_every(every).days
    if paths:
        from kizuna.cli import ingest

        ingest(paths)  # the same command, its report and its errors
    settings = get_settings()
    try:
        report = retrain(settings, days, names, progress=step_printer())
    except (FeatureBuildError, FeatureStoreError, TrainingError, ValueError) as exc:
        fail(str(exc))
    console.print(
        f"built {len(report.built)} snapshot(s), the last of {max(report.built):%Y-%m-%d}; "
        f"the online store holds data to {report.online_until:%Y-%m-%d}",
        highlight=False,
    )
    print_trained(report.trained)
    for item in report.skipped:
        err.print(f"[yellow]not trained:[/] {item.reason}", highlight=False, soft_wrap=True)
    if not report.trained:
        fail("no model could be trained on this data; see the reasons above")
    console.print(
        f"a running `kizuna serve` picks up new champions within {settings.model_poll_seconds:g} s",
        highlight=False,
    )


def step_printer():
    """A line per step with the time since the start (works in logs and terminals)."""
    started = time.perf_counter()

    def say(line: str) -> None:
        err.print(f"[dim]{time.perf_counter() - started:7.1f} s[/]  {line}", highlight=False)

    return say


def print_evaluation(name: str, table: pd.DataFrame, columns: list[str] | None = None) -> None:
    """One model's evaluation table: the model and its baselines, side by side."""
    shown = [c for c in (columns or list(table.columns)) if c in table.columns]
    out = Table(title=f"{name}: held-out evaluation", title_justify="left")
    out.add_column("scorer")
    for column in shown:
        out.add_column(column, justify="right")
    for scorer, row in table.iterrows():
        cells = []
        for column in shown:
            value = row[column]
            cells.append("—" if pd.isna(value) else f"{value:.4f}")
        out.add_row(str(scorer), *cells, style="bold" if scorer == "kizuna" else None)
    console.print(out)


# The columns worth reading first for each model; the full tables are in MLflow.
HEADLINE = {
    "churn": ["auc", "pr_auc", "brier", "log_loss", "ece", "lift_top10", "capture_top10"],
    "repurchase": [
        "concordance",
        "brier_7d",
        "brier_30d",
        "brier_90d",
        "auc_30d",
        "ece_30d",
    ],
    "value": ["spearman", "gini", "mae", "revenue_top20"],
    "offers": ["policy_value", "policy_value_se", "incremental_value", "qini", "auuc"],
}


def train_command(
    model: Annotated[str, typer.Argument(help="churn, repurchase, value, offers or all.")] = "all",
    seed: Annotated[int | None, typer.Option(help="LightGBM seed (default KIZUNA_SEED).")] = None,
    horizon_days: Annotated[
        int | None,
        typer.Option(min=1, help="Churn horizon H in days (default: from the data)."),
    ] = None,
    value_days: Annotated[int, typer.Option(min=7, help="Window of the value label.")] = 365,
    max_train_cutoffs: Annotated[
        int, typer.Option(min=1, help="Train on at most this many of the latest cutoffs.")
    ] = 12,
) -> None:
    """Train models on the feature snapshots, log them to MLflow and apply the gate.

    Each model is trained on early cutoffs, early-stopped and calibrated on a later one
    and evaluated with its baselines on the latest labelled cutoff. A new version becomes
    `champion` only if it beats the current champion on that same holdout; otherwise it
    is registered as `challenger`, with the reason.

    Examples:

        kizuna train all

        kizuna train churn --horizon-days 90 --seed 11
    """
    from kizuna.training.runs import train_and_register
    from kizuna.training.trainer import TrainConfig, TrainingError

    names = chosen_models(model)
    settings = get_settings()
    config = TrainConfig(
        seed=settings.seed if seed is None else seed,
        churn_horizon_days=horizon_days,
        value_days=value_days,
        max_train_cutoffs=max_train_cutoffs,
    )
    try:
        trained, skipped = train_and_register(
            settings, names, config, progress=step_printer(), keep_going=model == "all"
        )
    except (TrainingError, ValueError) as exc:
        fail(str(exc))
    print_trained(trained)
    for item in skipped:
        err.print(f"[yellow]not trained:[/] {item.reason}", highlight=False, soft_wrap=True)
    console.print(f"MLflow store: {settings.tracking_uri}", highlight=False)
    if not trained:
        fail("no model could be trained on this data; see the reasons above")


def print_trained(trained) -> None:
    """Each model's evaluation next to its baselines, and the gate's verdict."""
    for item in trained:
        name = item.result.name
        print_evaluation(name, item.result.evaluation, HEADLINE.get(name))
        verdict = item.verdict
        colour = "green" if verdict.alias == "champion" else "yellow"
        console.print(
            f"kizuna-{name} v{verdict.version} → [{colour}]{verdict.alias}[/]: {verdict.reason}",
            highlight=False,
        )


@models_app.command("list")
def list_command(
    model: Annotated[
        str | None, typer.Option(help="Only this model: churn, repurchase, value, offers.")
    ] = None,
) -> None:
    """Registered versions with their aliases, primary metric and the gate's reason.

    Example:

        kizuna models list --model churn
    """
    from kizuna.training.registry import list_versions

    versions = list_versions(get_settings(), model)
    if versions.empty:
        console.print("no models registered yet; run `kizuna train all`")
        return
    out = Table()
    for column in ["model", "version", "aliases", "metric", "value", "created", "gate_reason"]:
        out.add_column(column, overflow="fold")
    for row in versions.itertuples():
        out.add_row(
            row.model,
            str(row.version),
            row.aliases,
            row.metric,
            "" if pd.isna(row.value) else f"{row.value:.4f}",
            f"{row.created:%Y-%m-%d %H:%M}",
            row.gate_reason,
        )
    console.print(out)


@models_app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="churn, repurchase, value or offers.")],
    version: Annotated[str, typer.Argument(help="The version number to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on the version.")] = "by hand",
) -> None:
    """Make a version the champion by hand, bypassing the gate (the reason is recorded).

    Example:

        kizuna models promote churn 3 --reason "reviewed the challenger's plots"
    """
    from kizuna.training.registry import RegistryError, promote

    try:
        promote(get_settings(), model, version, reason)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"kizuna-{model} v{version} is now champion", highlight=False)


@models_app.command("card")
def card_command(
    model: Annotated[str, typer.Argument(help="churn, repurchase, value or offers.")],
    version: Annotated[
        str | None, typer.Argument(help="The version number; default: the champion.")
    ] = None,
) -> None:
    """Print a version's model card (markdown): intended use, data window, features,
    held-out metrics against the baselines, calibration, performance by segment, tier and
    country, known limits and consent handling.

    Example:

        kizuna models card churn 3 > churn-v3.md
    """
    from kizuna.training.registry import RegistryError, card

    try:
        text, _ = card(get_settings(), model, version)
    except RegistryError as exc:
        fail(str(exc))
    sys.stdout.write(text)


@models_app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="churn, repurchase, value or offers.")],
) -> None:
    """Give the champion alias back to the version that held it before.

    Example:

        kizuna models rollback churn
    """
    from kizuna.training.registry import RegistryError, rollback

    try:
        version = rollback(get_settings(), model)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"kizuna-{model} v{version} is champion again", highlight=False)


def feature_store_problem(exc: Exception, settings) -> str | None:
    """What to run first when the features or the Feast registry are missing or broken
    (a fresh ingest has neither); None when ``exc`` is about something else."""
    from feast.errors import FeastError
    from google.protobuf.message import DecodeError

    from kizuna.features.store import FeatureStoreError

    registry = settings.home_dir / "feast" / "registry.db"
    if isinstance(exc, FeatureStoreError):
        return f"the feature store is not ready: {exc}; then run the backtest again"
    if isinstance(exc, DecodeError):
        return (
            f"the Feast registry {registry} is damaged ({exc}); delete it and run the "
            "backtest again (it registers the features anew)"
        )
    if isinstance(exc, FeastError):
        return (
            f"the Feast registry does not match the features ({type(exc).__name__}: {exc}); "
            "run `kizuna features build` and `kizuna features apply`, then the backtest again"
        )
    return None


def parse_horizon(text: str | None) -> int | None:
    from kizuna.cli_features import parse_every

    return None if text is None else parse_every(text).days


def backtest_command(
    cutoff: Annotated[str, typer.Option(help="Stand at this date (YYYY-MM-DD, 00:00 UTC).")],
    horizon: Annotated[
        str | None,
        typer.Option(help="Churn horizon: 90d, 13w (default: from the data before the cutoff)."),
    ] = None,
    value_days: Annotated[
        int | None,
        typer.Option(min=7, help="Window of the value label (default: the horizon)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for the results (default $KIZUNA_HOME/backtests/<cutoff>)."),
    ] = None,
    model: Annotated[str, typer.Option(help="churn, repurchase, value, offers or all.")] = "all",
    every: Annotated[
        str, typer.Option(help="Spacing of the training snapshots built when missing.")
    ] = "7d",
    scheme: Annotated[
        str,
        typer.Option(help="Cutoff split: auto, apart (windows apart) or expanding (short data)."),
    ] = "auto",
) -> None:
    """Train every model only on data before a cutoff, score every customer at it, and
    compare with what happened after it, next to the baselines.

    Writes `scores.parquet` (one row per customer: scores and outcomes), `metrics.csv`
    and `metrics.txt` (every model and baseline) and `backtest.json` to the folder.
    Nothing is registered in MLflow.

    With a short history (a year of orders and a long horizon) the models train on
    expanding weekly cutoffs with labels cut at the held-out cutoff; the output says which
    scheme each model used and why.

    Example:

        kizuna backtest --cutoff 2025-06-01 --horizon 90d
        kizuna ingest --preset online-retail export.csv.gz && \
            kizuna backtest --cutoff 2010-09-09 --horizon 92d
    """
    from kizuna.cli_features import parse_day
    from kizuna.training.backtest import backtest
    from kizuna.training.trainer import TrainConfig, TrainingError

    names = chosen_models(model)
    settings = get_settings()
    day = parse_day(cutoff, "--cutoff")
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    folder = out or settings.home_dir / "backtests" / f"{day:%Y-%m-%d}"
    from kizuna.cli_features import parse_every

    if scheme not in ("auto", "apart", "expanding"):
        fail(f"unknown scheme {scheme!r}; choose auto, apart or expanding")
    days = parse_horizon(horizon)
    config = TrainConfig(
        seed=settings.seed,
        churn_horizon_days=days,
        value_days=value_days or days or 365,
        split_scheme=scheme,
    )
    try:
        report = backtest(
            settings,
            moment,
            folder,
            config,
            names,
            every_days=parse_every(every).days,
            progress=step_printer(),
        )
    except (TrainingError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:
        message = feature_store_problem(exc, settings)
        if message is None:
            raise
        fail(message)
    if not report.metrics.empty:
        for name, table in report.metrics.groupby("model", sort=False):
            print_evaluation(
                f"{name} at {day}",
                table.drop(columns="model").set_index("scorer"),
                HEADLINE.get(name),
            )
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"wrote {folder}", highlight=False)
