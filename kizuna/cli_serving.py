"""``kizuna serve``, ``kizuna keys ...``, ``kizuna score`` and ``kizuna lists ...``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from kizuna.console import console, err, fail
from kizuna.settings import get_settings

keys_app = typer.Typer(help="Create and list API keys.", no_args_is_help=True)
lists_app = typer.Typer(help="Print the marketer lists as CSV or JSON.", no_args_is_help=True)


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the scoring API (uvicorn) with the champion models.

    Example:

        kizuna serve --port 8000
    """
    import uvicorn

    uvicorn.run(
        "kizuna.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
    )


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what uses the key, e.g. crm-sync.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: score, offers, events, lists, admin.")
    ] = "score",
) -> None:
    """Create an API key and print it once (only its hash is stored).

    Example:

        kizuna keys create --name crm-sync --scopes score,lists
    """
    from kizuna.serving.keys import KeyError_, KeyStore, parse_scopes

    try:
        key = KeyStore(get_settings()).create(name, parse_scopes(scopes))
    except KeyError_ as exc:
        fail(str(exc))
    err.print(f"created key {name!r} with scopes {scopes}; it is shown only now:")
    console.print(key, highlight=False)


@keys_app.command("list")
def list_keys() -> None:
    """List the keys' names, scopes and creation times (never the keys).

    Example:

        kizuna keys list
    """
    from kizuna.serving.keys import KeyStore

    for key in KeyStore(get_settings()).list():
        console.print(f"{key.name}\t{','.join(key.scopes)}\t{key.created}", highlight=False)


def _book():
    from kizuna.serving.app import build_book
    from kizuna.serving.scoring import ServingError

    try:
        return build_book(get_settings())
    except ServingError as exc:
        fail(str(exc))


def _print(rows, fmt: str) -> None:
    from kizuna.serving.lists import to_csv, to_records

    if fmt == "csv":
        sys.stdout.write(to_csv(rows))
    else:
        import json

        sys.stdout.write(json.dumps(to_records(rows), indent=1) + "\n")


# The filters both lists take, declared once.
MinChurn = Annotated[float, typer.Option(min=0, max=1, help="Least churn risk.")]
MinValue = Annotated[
    float, typer.Option(min=0, help="Least predicted value (over the value model's window).")
]
Segments = Annotated[list[str] | None, typer.Option("--segment", help="RFM segment (repeatable).")]
Channel = Annotated[str | None, typer.Option(help="email, sms or push consent.")]
NotContactedDays = Annotated[
    int | None, typer.Option(min=0, help="Not contacted in this many days.")
]
Limit = Annotated[int, typer.Option(min=1, help="Most customers listed.")]
Format = Annotated[Literal["csv", "json"], typer.Option(help="csv or json.")]


def _filter(min_churn, min_value, segment, channel, not_contacted_days, limit):
    from kizuna.serving.lists import ListFilter

    return ListFilter(
        min_churn, min_value, tuple(segment or ()), channel, not_contacted_days, limit
    )


@lists_app.command("at-risk")
def at_risk_command(
    min_churn: MinChurn = 0.5,
    min_value: MinValue = 0.0,
    segment: Segments = None,
    channel: Channel = None,
    not_contacted_days: NotContactedDays = None,
    limit: Limit = 100,
    format: Format = "csv",
) -> None:
    """Customers at risk, most value at risk first (the same list as the API).

    Example:

        kizuna lists at-risk --min-churn 0.6 --channel email --format csv > at-risk.csv
    """
    from kizuna.serving.lists import at_risk
    from kizuna.serving.scoring import ServingError

    f = _filter(min_churn, min_value, segment, channel, not_contacted_days, limit)
    try:
        _print(at_risk(_book(), f), format)
    except ServingError as exc:  # a model the list needs has no champion
        fail(str(exc))


@lists_app.command("due-to-repurchase")
def due_command(
    due_within_days: Annotated[
        int, typer.Option(min=0, help="Expected within this many days.")
    ] = 14,
    min_churn: MinChurn = 0.0,
    min_value: MinValue = 0.0,
    segment: Segments = None,
    channel: Channel = None,
    not_contacted_days: NotContactedDays = None,
    limit: Limit = 100,
    format: Format = "csv",
) -> None:
    """Customers expected to buy within N days (or overdue), soonest first.

    Example:

        kizuna lists due-to-repurchase --due-within-days 7 --format json
    """
    from kizuna.serving.lists import due_to_repurchase
    from kizuna.serving.scoring import ServingError

    f = _filter(min_churn, min_value, segment, channel, not_contacted_days, limit)
    try:
        _print(due_to_repurchase(_book(), f, due_within_days), format)
    except ServingError as exc:  # a model the list needs has no champion
        fail(str(exc))


def score_command(
    out: Annotated[Path, typer.Option(help="Where to write: .parquet or .csv.")],
    chunk: Annotated[int, typer.Option(min=1_000, help="Customers scored at a time.")] = 100_000,
) -> None:
    """Score every customer with the champion models and their best offer (for a nightly
    CRM sync). Reasons are left out (they cost a SHAP pass; the API has them).

    Example:

        kizuna score --out scores.parquet
    """
    import time
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from kizuna.serving.decisions import Policy, best_offers, load_catalog
    from kizuna.serving.scoring import Champions, ServingError, latest_vectors, score_frame

    if out.suffix not in (".parquet", ".csv"):
        fail(f"--out {out} must end in .parquet or .csv")
    settings = get_settings()
    started = time.perf_counter()
    try:
        champions = Champions.load(settings)
        frame = latest_vectors(settings)
    except ServingError as exc:
        fail(str(exc))
    for reason in champions.missing.values():  # that model's columns are left out
        err.print(f"without a model: {reason}", highlight=False)
    catalog, policy, now = load_catalog(settings), Policy.from_settings(settings), datetime.now(UTC)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = None
    for first in range(0, len(frame), chunk):
        part = frame.iloc[first : first + chunk]
        table = score_frame(champions.models, part)
        table = pd.concat([table, best_offers(table, catalog, policy, now)], axis=1)
        table = table.drop(columns=[c for c in table.columns if c.startswith("profile_")])
        for name, version in champions.versions.items():
            table[f"{name}_model_version"] = version
        if out.suffix == ".csv":
            table.to_csv(tmp, mode="a", header=first == 0, index=False, float_format="%.6g")
        else:
            batch = pa.Table.from_pandas(table, preserve_index=False)
            writer = writer or pq.ParquetWriter(tmp, batch.schema)
            writer.write_table(batch)
        done = min(first + chunk, len(frame))
        rate = done / (time.perf_counter() - started)
        err.print(f"scored {done:,}/{len(frame):,} customers ({rate:,.0f}/s)", highlight=False)
    if writer is not None:
        writer.close()
    tmp.replace(out)
    console.print(
        f"wrote {len(frame):,} customers to {out} in {time.perf_counter() - started:.1f} s",
        highlight=False,
    )
