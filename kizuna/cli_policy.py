"""``kizuna policy evaluate``: a candidate offer policy's value, estimated before launch."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from kizuna.console import console, fail
from kizuna.settings import get_settings

policy_app = typer.Typer(
    help="Estimate an offer policy's value from the logged exposures before it serves.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

NAMES = {
    "logged": "logged policy (observed)",
    "candidate_ips": "candidate, IPS",
    "candidate_snips": "candidate, SNIPS",
    "candidate_dr": "candidate, doubly robust",
}


@policy_app.command("evaluate")
def evaluate_command(
    candidate: Annotated[
        str,
        typer.Option(
            help="The offer model version to evaluate: a number, or an alias "
            "(champion, challenger)."
        ),
    ] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Off-policy evaluation of a registered offer model's policy: its purchase rate
    estimated with IPS, SNIPS and doubly robust estimators (with standard errors) on the
    exposures it neither trained nor validated on, beside the logged policy's observed
    rate on the same exposures.

    Example:

        kizuna policy evaluate --candidate challenger
    """
    from kizuna.training.policy import PolicyEvaluationError, evaluate_candidate

    try:
        report = evaluate_candidate(get_settings(), candidate)
    except PolicyEvaluationError as exc:
        fail(str(exc))
    table = report.table
    if as_json:
        rows = table.reset_index().to_dict(orient="records")
        body = {
            "version": report.version,
            "held_out_from": report.held_out_from.isoformat(),
            "estimates": rows,
            "chosen": {str(k): int(v) for k, v in table.attrs.get("chosen", {}).items()},
        }
        console.print_json(json.dumps(body))
        return
    out = Table(
        title=f"kizuna-offers v{report.version} on the exposures sent from "
        f"{report.held_out_from:%Y-%m-%d} (purchase rate within the offer window)"
    )
    for column in ["policy", "value", "± standard error", "rows"]:
        out.add_column(column, justify="left" if column == "policy" else "right")
    for name, row in table.iterrows():
        out.add_row(
            NAMES.get(str(name), str(name)),
            f"{row['value']:.4f}",
            f"{row['standard_error']:.4f}",
            f"{int(row['rows']):,}",
        )
    console.print(out)
    console.print(
        "rows: the exposures evaluated (logged) or those whose sent arm is the candidate's "
        "choice (the candidate's estimates rest on them)",
        highlight=False,
    )
