"""``kizuna customers delete`` (erasure) and ``kizuna customers export`` (everything held)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from kizuna.console import console, err, fail
from kizuna.settings import get_settings

customers_app = typer.Typer(
    help="Erase a customer, or export everything Kizuna holds on one (docs/privacy.md).",
    no_args_is_help=True,
)


@customers_app.command("delete")
def delete_command(
    customer_ids: Annotated[list[str], typer.Argument(help="The customers to erase.")],
) -> None:
    """Erase customers from the lake, quarantine, features, online store, logs and batch
    files, keeping a tombstone (a keyed hash of each id) so neither an ingest nor an event
    brings them back without a new customer record. With a server running, use
    DELETE /v1/customers/{id} instead (it also drops them from the server's memory), or
    restart the server after this.

    Example:

        kizuna customers delete C000123 C000456
    """
    from kizuna.features.lake import LakeBusyError
    from kizuna.features.privacy import PrivacyError, erase

    try:
        report = erase(get_settings(), customer_ids)
    except (PrivacyError, LakeBusyError) as exc:
        fail(str(exc))
    removed = ", ".join(f"{place} {n:,}" for place, n in sorted(report.removed.items()))
    console.print(
        f"erased {report.erased:,} customer(s) at {report.erased_at:%Y-%m-%d %H:%M} UTC; "
        f"removed: {removed or 'nothing held'}; tombstones kept",
        highlight=False,
    )


@customers_app.command("export")
def export_command(
    customer_id: Annotated[str, typer.Argument(help="The customer.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the JSON here instead of printing it.")
    ] = None,
) -> None:
    """Everything Kizuna holds on one customer, as JSON: lake rows, quarantined rows,
    feature snapshots, decisions and outcomes.

    Example:

        kizuna customers export C000123 --out C000123.json
    """
    from kizuna.features.privacy import PrivacyError, export

    try:
        held = export(get_settings(), customer_id)
    except PrivacyError as exc:
        fail(str(exc))
    text = json.dumps(held, indent=1, default=str)
    if out is None:
        sys.stdout.write(text + "\n")
    else:
        out.write_text(text)
        err.print(f"wrote everything held on {customer_id} to {out}", highlight=False)
