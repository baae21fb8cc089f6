"""``kizuna plan``: plan a budgeted campaign, print it beside the simple strategies, log it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from kizuna.console import console, err, fail
from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.lists import AudienceName
from kizuna.settings import get_settings

# The option behind each field a planning error names.
OPTIONS = {
    "channel": "--channel",
    "offer_ids": "--offer",
    "budget": "--budget",
    "holdout_share": "--holdout",
}


def plan_command(
    channel: Annotated[
        Literal[CONSENT_CHANNELS], typer.Option(help="The channel the offers go out on.")
    ],
    budget: Annotated[
        float,
        typer.Option(
            help="Most expected spend: sum of P(redeem) x (offer cost + discount) + contact "
            "cost over the treated customers."
        ),
    ],
    offer: Annotated[
        list[str] | None,
        typer.Option("--offer", help="Offer id (repeatable); default every valid one."),
    ] = None,
    holdout: Annotated[
        float, typer.Option(min=0, max=0.5, help="Share of assigned customers held out.")
    ] = 0.1,
    seed: Annotated[
        int | None, typer.Option(min=0, help="The holdout's seed (0 or more); default random.")
    ] = None,
    list_name: Annotated[
        AudienceName,
        typer.Option("--list", help="The marketer list the audience comes from."),
    ] = "all",
    min_churn: Annotated[float, typer.Option(min=0, max=1, help="Lowest churn probability.")] = 0.0,
    min_value: Annotated[float, typer.Option(min=0, help="Lowest predicted value.")] = 0.0,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="RFM segment (repeatable).")
    ] = None,
    loyalty_tier: Annotated[
        list[str] | None, typer.Option("--loyalty-tier", help="Loyalty tier (repeatable).")
    ] = None,
    country: Annotated[
        list[str] | None, typer.Option("--country", help="Country (repeatable).")
    ] = None,
    not_contacted_days: Annotated[
        int | None, typer.Option(min=0, help="Not contacted in this many days.")
    ] = None,
    category: Annotated[
        str | None, typer.Option(help="Replenishment: the category; else the top category.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Also write the plan's CSV here.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and print; log no decision.")
    ] = False,
) -> None:
    """Plan a campaign: at most one offer per customer, the most expected profit within
    the budget, a random holdout for measurement. Unless --dry-run, every customer's
    decision is logged (the caps and cooldowns then count its contacts) and the CSV is kept
    under $KIZUNA_HOME/serving/campaigns/.

    Example:

        kizuna plan --channel email --budget 500 --list at-risk --dry-run --out plan.csv
    """
    from kizuna.serving.app import build_book
    from kizuna.serving.campaigns import CampaignError, commit_plan, plan_campaign, to_csv
    from kizuna.serving.decisions import DecisionLog, Policy, load_catalog
    from kizuna.serving.lists import ListError, ListFilter, audience_of
    from kizuna.serving.scoring import ServingError

    if budget <= 0:
        fail(f"--budget must be above 0 (it is the most expected spend), not {budget}")
    filters = {
        "list": list_name,
        "min_churn": min_churn,
        "min_value": min_value,
        "segments": list(segment or ()),
        "loyalty_tiers": list(loyalty_tier or ()),
        "countries": list(country or ()),
        "not_contacted_days": not_contacted_days,
    }
    settings = get_settings()
    try:
        book = build_book(settings)
        book.champions.require(("offers",), "the campaign planner")
        cycles = None
        if list_name == "replenishment":
            from kizuna.serving.replenishment import ReplenishmentCache, lookup

            cycles = lookup(ReplenishmentCache().get(settings))
        f = ListFilter(
            min_churn=min_churn,
            min_value=min_value,
            segments=tuple(segment or ()),
            tiers=tuple(loyalty_tier or ()),
            countries=tuple(country or ()),
            not_contacted_days=not_contacted_days,
            category=category,
        )
        audience = audience_of(book, list_name, f, 14, cycles)
        err.print(f"audience: {len(audience):,} customers ({filters['list']})", highlight=False)
        history = DecisionLog(settings.home_dir / "serving")
        plan = plan_campaign(
            audience,
            load_catalog(settings),
            Policy.from_settings(settings),
            history,
            channel=channel,
            budget=budget,
            offer_ids=offer or None,
            holdout_share=holdout,
            seed=seed,
            mean_order_value=book.mean_order_value,
        )
    except CampaignError as exc:
        fail(f"{exc} ({OPTIONS.get(exc.field, exc.field)})")
    except ListError as exc:
        fail(str(exc))
    except ServingError as exc:  # no champion, no features
        fail(str(exc))
    _print_plan(plan)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(to_csv(plan))
        console.print(f"wrote {len(plan.rows):,} rows to {out}", highlight=False)
    if dry_run:
        console.print("dry run: no decision logged", highlight=False)
        return
    path = commit_plan(plan, history, settings, dict(book.champions.versions))
    console.print(
        f"logged {len(plan.rows):,} decisions of campaign {plan.campaign_id}; CSV kept at {path}",
        highlight=False,
    )


def _print_plan(plan) -> None:
    c = plan.counts
    summary = Table(title=f"campaign {plan.campaign_id} on {plan.channel}", show_header=False)
    for name, value in (
        ("offers", ", ".join(plan.offer_ids)),
        ("budget (expected spend)", f"{plan.budget:,.2f}"),
        ("expected spend (treated)", f"{plan.spent:,.2f}"),
        ("expected incremental purchases", f"{plan.expected_incremental_purchases:,.1f}"),
        ("expected incremental profit", f"{plan.expected_profit:,.2f}"),
        ("audience", f"{c.audience:,}"),
        ("eligible", f"{c.eligible:,}"),
        ("assigned", f"{c.assigned:,} ({c.treated:,} treated, {c.held_out:,} held out)"),
        ("left out by the budget", f"{c.left_out_by_budget:,}"),
        ("blocked", ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c.blocked.items())),
        ("holdout share, seed", f"{plan.holdout_share:g}, {plan.seed}"),
    ):
        summary.add_row(name, value)
    console.print(summary)
    table = Table(title="the same budget, three ways (everyone assigned treated)")
    for column in ("strategy", "offer", "customers", "purchases", "expected cost", "profit"):
        table.add_column(column, justify="left" if column in ("strategy", "offer") else "right")
    names = {
        "plan": "this plan",
        "best_single_offer": "best single offer to everyone",
        "high_risk": "everyone at high risk",
    }
    for t in plan.comparisons:
        table.add_row(
            names.get(t.strategy, t.strategy),
            t.offer_id or "",
            f"{t.customers:,}",
            f"{t.expected_incremental_purchases:,.1f}",
            f"{t.expected_cost:,.2f}",
            f"{t.expected_profit:,.2f}",
        )
    console.print(table)
