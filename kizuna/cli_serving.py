"""``kizuna serve``, ``kizuna keys ...``, ``kizuna score`` and ``kizuna lists ...``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer

from kizuna.console import console, err, fail
from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.settings import get_settings

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
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
    expires: Annotated[
        str | None,
        typer.Option(help="When the key stops working: 90d, 12h, or a date (2027-03-31)."),
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored). A running server
    admits it from its next request.

    Example:

        kizuna keys create --name crm-sync --scopes score,lists --expires 90d
    """
    from kizuna.serving.keys import KeyError_, KeyStore, parse_expiry, parse_scopes

    try:
        until = parse_expiry(expires) if expires else None
        key = KeyStore(get_settings()).create(name, parse_scopes(scopes), until)
    except KeyError_ as exc:
        fail(str(exc))
    valid = f", valid until {until.isoformat()}" if until else ""
    err.print(f"created key {name!r} with scopes {scopes}{valid}; it is shown only now:")
    console.print(key, highlight=False)


@keys_app.command("revoke")
def revoke_key(
    names: Annotated[list[str], typer.Argument(help="The names of the keys to revoke.")],
) -> None:
    """Revoke keys by name: a running server refuses them from its next request, and the
    marketer page's sessions signed in with them end. The record stays, for the audit.

    Example:

        kizuna keys revoke crm-sync
    """
    from kizuna.serving.keys import KeyError_, KeyStore

    store = KeyStore(get_settings())
    for name in names:
        try:
            revoked = store.revoke(name)
        except KeyError_ as exc:
            fail(str(exc))
        err.print(f"revoked key {name!r} at {revoked.revoked}")


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per key.")] = False,
) -> None:
    """List the keys' names, scopes, creation, expiry, revocation and last use (never the
    keys): tab-separated with a header, or JSON.

    Example:

        kizuna keys list --json
    """
    import json
    from datetime import UTC, datetime

    from kizuna.serving.keys import KeyStore

    store = KeyStore(get_settings())
    used = store.last_used()
    now = datetime.now(UTC)
    if not as_json:
        typer.echo("name\tscopes\tcreated\texpires\tstatus\tlast_used")
    for key in store.list():
        status = "revoked" if key.revoked else ("expired" if key.refusal(now) else "active")
        row = {
            "name": key.name,
            "scopes": list(key.scopes),
            "created": key.created,
            "expires": key.expires,
            "revoked": key.revoked,
            "status": status,
            "last_used": used.get(key.name),
        }
        if as_json:
            typer.echo(json.dumps(row))
            continue
        cells = [key.name, ",".join(key.scopes), key.created, key.expires or "never", status]
        typer.echo("\t".join([*cells, used.get(key.name) or "never"]))


def _book():
    from kizuna.serving.app import build_book
    from kizuna.serving.scoring import ServingError

    try:
        return build_book(get_settings())
    except ServingError as exc:
        fail(str(exc))


def _print(page, fmt: str) -> None:
    from kizuna.serving.lists import to_csv, to_json

    if fmt == "csv":
        sys.stdout.write(to_csv(page.rows))
    else:
        import json

        sys.stdout.write(json.dumps(to_json(page), indent=1) + "\n")


def _list_command(name: str, example: str, due: bool = False):
    """The `kizuna lists NAME` command: the same filters, order and page as the API."""
    from kizuna.serving.lists import SPECS

    spec = SPECS[name]

    def command(
        min_churn: Annotated[
            float, typer.Option(min=0, max=1, help="Lowest churn probability.")
        ] = spec.min_churn,
        max_churn: Annotated[
            float, typer.Option(min=0, max=1, help="Highest churn probability.")
        ] = 1.0,
        risk_band: Annotated[
            list[str] | None, typer.Option("--risk-band", help="low, medium or high (repeat).")
        ] = None,
        min_value: Annotated[
            float, typer.Option(min=0, help="Lowest predicted value (value model's window).")
        ] = 0.0,
        segment: Annotated[
            list[str] | None, typer.Option("--segment", help="RFM segment (repeatable).")
        ] = None,
        tier: Annotated[
            list[str] | None, typer.Option("--tier", help="Loyalty tier (repeatable).")
        ] = None,
        country: Annotated[
            list[str] | None, typer.Option("--country", help="Country code (repeatable).")
        ] = None,
        channel: Annotated[
            Literal[CONSENT_CHANNELS] | None, typer.Option(help="Consent to this channel.")
        ] = None,
        not_contacted_days: Annotated[
            int | None, typer.Option(min=0, help="Not contacted in this many days.")
        ] = None,
        category: Annotated[
            str | None, typer.Option(help="Product category (replenishment) or top category.")
        ] = None,
        due_within_days: Annotated[
            int, typer.Option(min=0, max=365, help="Due within this many days.")
        ] = 14,
        sort: str | None = typer.Option(None, help=f"Sort by: {', '.join(spec.sortable)}."),
        order: Annotated[Literal["asc", "desc"] | None, typer.Option(help="asc or desc.")] = None,
        offset: Annotated[int, typer.Option(min=0, help="Rows to skip.")] = 0,
        limit: Annotated[int, typer.Option(min=1, help="Most customers listed.")] = 100,
        format: Annotated[Literal["csv", "json"], typer.Option(help="csv or json.")] = "csv",
    ) -> None:
        from kizuna.serving.lists import ListError, ListFilter, run
        from kizuna.serving.scoring import ServingError

        f = ListFilter(
            min_churn=min_churn,
            max_churn=max_churn,
            risk_bands=tuple(risk_band or ()),
            min_value=min_value,
            segments=tuple(segment or ()),
            tiers=tuple(tier or ()),
            countries=tuple(country or ()),
            channel=channel,
            not_contacted_days=not_contacted_days,
            category=category,
            sort=sort,
            descending=None if order is None else order == "desc",
            offset=offset,
            limit=limit,
        )
        cycles = None
        if name == "replenishment":
            from kizuna.serving.replenishment import ReplenishmentCache, lookup

            cycles = lookup(ReplenishmentCache().get(get_settings()))
        try:
            page = run(_book(), name, f, within_days=due_within_days, replenishment=cycles)
        except (ServingError, ListError) as exc:  # a model the list needs is not served
            fail(str(exc))
        _print(page, format)

    command.__doc__ = f"""{spec.description} The same list as GET /v1/lists/{name}.

    Example:

        {example}
    """
    if not due:  # hide the option only the timing lists read (its default stays)
        import inspect

        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "due_within_days"]
        command.__signature__ = signature.replace(parameters=kept)
    lists_app.command(name)(command)


_list_command(
    "at-risk",
    "kizuna lists at-risk --min-churn 0.6 --channel email --tier Gold > at-risk.csv",
)
_list_command(
    "due-to-repurchase",
    "kizuna lists due-to-repurchase --due-within-days 7 --format json",
    due=True,
)
_list_command(
    "replenishment", "kizuna lists replenishment --category coffee --due-within-days 7", due=True
)
_list_command("top-value", "kizuna lists top-value --country DE --limit 500")
_list_command("win-back", "kizuna lists win-back --channel email --not-contacted-days 30")
_list_command("never-converted", "kizuna lists never-converted --channel email")


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

    from kizuna.features.realtime import ConsentFollower
    from kizuna.serving.decisions import Policy, best_offers, load_catalog
    from kizuna.serving.scoring import (
        Champions,
        ServingError,
        latest_vectors,
        score_frame,
        withhold_opted_out,
    )

    if out.suffix not in (".parquet", ".csv"):
        fail(f"--out {out} must end in .parquet or .csv")
    settings = get_settings()
    started = time.perf_counter()
    try:
        champions = Champions.load(settings)
        # Consent changes ingested from files since the snapshots, as the API does.
        changed = ConsentFollower.load(settings).catch_up()
        if changed:
            err.print(f"consent or profile changes of {len(changed):,} customers caught up")
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
        table = withhold_opted_out(table)  # an opt-out keeps its row, never its scores
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
    from kizuna.features.privacy import remember_output

    remember_output(settings, out)  # an erasure rewrites this file too
    console.print(
        f"wrote {len(frame):,} customers to {out} in {time.perf_counter() - started:.1f} s",
        highlight=False,
    )
