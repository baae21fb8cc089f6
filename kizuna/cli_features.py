"""``kizuna features ...``: build snapshots, apply the Feast repository, materialize."""

from __future__ import annotations

import re
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kizuna.console import console, err, fail
from kizuna.settings import get_settings

features_app = typer.Typer(
    help="Build feature snapshots, register them with Feast and load the online store.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def parse_every(text: str) -> timedelta:
    """'7d', '2w' or '30' (days) as a timedelta, or a clear error."""
    match = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", text)
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{text!r} is not a period; write e.g. 7d or 2w")
    days = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    return timedelta(days=days)


def parse_day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{option} {text!r} is not a date; write YYYY-MM-DD") from None


def resolve_cutoffs(
    as_of: list[str] | None, every: str | None, start: str | None, end: str | None, settings
) -> list[datetime]:
    """The cutoffs a build covers: explicit --as-of dates, a --every range, or the default."""
    from kizuna.features.compute import Tables, cutoff_range, default_cutoff
    from kizuna.features.ingest import connect
    from kizuna.features.lake import Lake

    if as_of:
        days = [parse_day(d, "--as-of") for d in as_of]
        return [datetime(d.year, d.month, d.day, tzinfo=UTC) for d in days]
    period = parse_every(every) if every is not None else None
    last = parse_day(end, "--to") if end else None
    first = parse_day(start, "--from") if start else None
    if last is None:
        last = default_cutoff(Tables.from_lake(Lake(settings)), connect(settings)).date()
    if period is None:
        return [datetime(last.year, last.month, last.day, tzinfo=UTC)]
    first = first or last - timedelta(days=365)
    if first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}")
    return cutoff_range(first, last, period)


@features_app.command("build")
def build(
    as_of: Annotated[
        list[str] | None, typer.Option("--as-of", help="A cutoff date (repeatable).")
    ] = None,
    every: Annotated[
        str | None, typer.Option(help="Cutoffs every period between --from and --to: 7d, 2w.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="First cutoff, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last cutoff, YYYY-MM-DD.")] = None,
) -> None:
    """Compute customer snapshots as of each cutoff, in DuckDB over the lake.

    Without options: one snapshot as of the day after the latest data. With `--every`:
    one per period from `--from` (default a year before `--to`) to `--to` (default the
    latest). Snapshots of a cutoff built again replace the old ones.

    Examples:

        kizuna features build

        kizuna features build --as-of 2025-06-30 --as-of 2025-09-30

        kizuna features build --every 7d --from 2025-01-01 --to 2025-12-31
    """
    from kizuna.features.compute import FeatureBuildError, build_feature_files

    settings = get_settings()
    try:
        cutoffs = resolve_cutoffs(as_of, every, start, end, settings)
    except FeatureBuildError as exc:
        fail(f"{exc}; ingest data first (kizuna ingest FILE, or kizuna run for a demo)")
    with Progress(
        TextColumn("building snapshots"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("build", total=len(cutoffs))
        started = datetime.now(UTC)
        try:
            paths = build_feature_files(
                settings,
                cutoffs,
                progress=lambda done, total: progress.update(task, completed=done),
            )
        except FeatureBuildError as exc:
            fail(str(exc))
    seconds = (datetime.now(UTC) - started).total_seconds()
    console.print(
        f"built {len(cutoffs)} snapshot(s) ({cutoffs[0].date()} .. {cutoffs[-1].date()}) "
        f"in {seconds:.1f} s",
        highlight=False,
    )
    for view, path in paths.items():
        console.print(f"  {view}: {path}", highlight=False)


@features_app.command("apply")
def apply() -> None:
    """Register the entity, feature views and feature services with Feast.

    Example:

        kizuna features apply
    """
    from kizuna.features.store import FeatureStoreError
    from kizuna.features.store import apply as run_apply

    try:
        summary = run_apply(get_settings())
    except FeatureStoreError as exc:
        fail(str(exc))
    print_services(summary)


def print_services(summary) -> None:
    for view, n in summary.views.items():
        console.print(f"  view {view}: {n} features", highlight=False)
    for service, n in summary.services.items():
        console.print(f"  service {service}: serves {n} features", highlight=False)


@features_app.command("materialize")
def materialize(
    incremental: Annotated[
        bool, typer.Option(help="Only what is new since the last materialization.")
    ] = False,
) -> None:
    """Load the snapshots into the online store (SQLite by default).

    Examples:

        kizuna features materialize

        kizuna features materialize --incremental
    """
    from kizuna.features.store import FeatureStoreError
    from kizuna.features.store import materialize as run_materialize

    try:
        low, high = run_materialize(get_settings(), incremental=incremental)
    except FeatureStoreError as exc:
        fail(str(exc))
    console.print(f"materialized snapshots {low.date()} .. {high.date()}", highlight=False)


@features_app.command("catalog")
def catalog(
    markdown: Annotated[bool, typer.Option(help="Print docs/features.md.")] = False,
) -> None:
    """List every feature with its meaning, window and source.

    Example:

        kizuna features catalog --markdown > docs/features.md
    """
    from kizuna.features import catalog as cat

    if markdown:
        sys.stdout.write(cat.markdown())
        return
    for view in cat.VIEWS:
        console.print(f"[bold]{view}[/]")
        for f in cat.by_view(view):
            console.print(f"  {f.name} ({f.window}): {f.meaning}", highlight=False)
