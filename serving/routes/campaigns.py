"""POST /v1/campaigns: plan (and log) a budgeted campaign over an audience."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.campaigns import (
    CSV_COLUMNS,
    CampaignError,
    CampaignPlan,
    UnknownCustomersError,
    commit_plan,
    plan_campaign,
    rows_of,
    to_csv,
)
from kizuna.serving.deps import Book, require
from kizuna.serving.errors import MODEL_MISSING, Problem, documented
from kizuna.serving.lists import AudienceName, ListFilter, audience_of
from kizuna.serving.routes.lists import replenishment_of
from kizuna.serving.scoring import ScoreBook

router = APIRouter(prefix="/v1", tags=["campaigns"])
OffersKey = Depends(require("offers"))

ListName = AudienceName


class Audience(BaseModel):
    """Who the campaign may reach: the customers named, or a marketer list's filters."""

    model_config = ConfigDict(populate_by_name=True)
    customer_ids: list[str] | None = Field(
        None, min_length=1, description="These customers (instead of a list and filters)."
    )
    list_name: ListName = Field("all", alias="list", description="The marketer list.")
    min_churn: float = Field(0.0, ge=0, le=1, description="Lowest churn probability.")
    max_churn: float = Field(1.0, ge=0, le=1, description="Highest churn probability.")
    risk_bands: list[Literal["low", "medium", "high"]] = Field(
        default_factory=list, description="Risk bands to keep."
    )
    min_value: float = Field(0.0, ge=0, description="Lowest predicted value.")
    segments: list[str] = Field(default_factory=list, description="RFM segments to keep.")
    loyalty_tiers: list[str] = Field(default_factory=list, description="Loyalty tiers to keep.")
    countries: list[str] = Field(default_factory=list, description="Countries to keep.")
    not_contacted_days: int | None = Field(
        None, ge=0, description="Keep customers sent no offer in this many days."
    )
    category: str | None = Field(
        None, description="Replenishment: the category; other lists: the top category."
    )
    due_within_days: int = Field(
        14, ge=0, le=365, description="Due lists: due within this many days."
    )

    @model_validator(mode="after")
    def _ids_or_filters(self) -> Audience:
        if self.customer_ids is not None and self.filters() != Audience().filters():
            raise ValueError("give customer_ids or a list with filters, not both")
        return self

    def filters(self) -> dict[str, Any]:
        """The list and its filters."""
        return self.model_dump(by_alias=True, exclude={"customer_ids"})

    def list_filter(self) -> ListFilter:
        """The filters as the lists read them (the whole list: no page)."""
        return ListFilter(
            min_churn=self.min_churn,
            max_churn=self.max_churn,
            risk_bands=tuple(self.risk_bands),
            min_value=self.min_value,
            segments=tuple(self.segments),
            tiers=tuple(self.loyalty_tiers),
            countries=tuple(self.countries),
            not_contacted_days=self.not_contacted_days,
            category=self.category,
        )


class CampaignRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "audience": {"list": "at-risk", "min_churn": 0.6},
                    "channel": "email",
                    "budget": 500,
                    "holdout_share": 0.1,
                    "seed": 7,
                    "dry_run": True,
                }
            ]
        }
    )
    audience: Audience = Field(default_factory=Audience)
    channel: Literal[CONSENT_CHANNELS]
    offer_ids: list[str] | None = Field(
        None, description="Offers to choose from; default every valid offer of the channel."
    )
    budget: float = Field(
        gt=0,
        description="Most expected spend: the sum over treated customers of P(redeem) x "
        "(offer cost + discount) + contact cost.",
    )
    holdout_share: float = Field(
        0.1, ge=0, le=0.5, description="Share of assigned customers held out, for measurement."
    )
    seed: int | None = Field(
        None, ge=0, lt=2**63, description="The holdout's seed (0 or more); default a random one."
    )
    dry_run: bool = Field(False, description="Plan without logging the decisions.")
    format: Literal["json", "csv"] = "json"


class Comparison(BaseModel):
    strategy: str = Field(
        description="plan (every assigned customer treated), best_single_offer (one offer "
        "to everyone, highest churn risk first) or high_risk (one offer to the high-risk "
        "band, highest risk first)."
    )
    offer_id: str | None = Field(description="The single offer of a simple strategy.")
    customers: int
    expected_incremental_purchases: float = Field(description="Sum of uplifts.")
    expected_cost: float
    expected_profit: float


class Counts(BaseModel):
    audience: int
    eligible: int = Field(description="With at least one allowed offer that adds value.")
    assigned: int
    held_out: int
    treated: int
    left_out_by_budget: int
    blocked: dict[str, int] = Field(
        description="Customers with no offer, by the first rule that stopped them: consent, "
        "cap, eligibility, cooldown, no_positive_offer."
    )


class PlanRow(BaseModel):
    campaign_id: str
    decision_id: str = Field(description="Report outcomes against it.")
    customer_id: str
    channel: str
    action: str = Field(description="The offer sent, or no_offer.")
    offer_id: str | None = Field(description="The offer assigned (also when held out).")
    holdout: bool
    propensity: float = Field(description="P(the action) under the plan's randomisation.")
    expected_uplift: float
    expected_cost: float
    expected_profit: float
    reason: str


class CampaignResponse(BaseModel):
    campaign_id: str
    created_at: datetime
    channel: str
    budget: float
    spent: float = Field(description="Expected spend of the treated customers.")
    holdout_share: float
    seed: int
    offer_ids: list[str]
    expected_incremental_purchases: float
    expected_profit: float
    counts: Counts
    comparisons: list[Comparison]
    dry_run: bool
    rows: list[PlanRow]


def _audience(request: Request, book: ScoreBook, audience: Audience) -> pd.DataFrame:
    if audience.customer_ids is not None:
        return rows_of(book.table, audience.customer_ids)
    name = audience.list_name
    cycles = replenishment_of(request) if name == "replenishment" else None
    return audience_of(book, name, audience.list_filter(), audience.due_within_days, cycles)


def _response(plan: CampaignPlan, dry_run: bool) -> dict[str, Any]:
    return {
        "campaign_id": plan.campaign_id,
        "created_at": plan.created_at,
        "channel": plan.channel,
        "budget": plan.budget,
        "spent": plan.spent,
        "holdout_share": plan.holdout_share,
        "seed": plan.seed,
        "offer_ids": list(plan.offer_ids),
        "expected_incremental_purchases": plan.expected_incremental_purchases,
        "expected_profit": plan.expected_profit,
        "counts": asdict(plan.counts),
        "comparisons": [asdict(c) for c in plan.comparisons],
        "dry_run": dry_run,
        "rows": plan.rows[[*CSV_COLUMNS, "reason"]].to_dict("records"),
    }


@router.post(
    "/campaigns",
    response_model=CampaignResponse,
    summary="Plan a budgeted campaign: at most one offer per customer, most expected profit",
    description=(
        "Assigns at most one offer of the channel to each audience customer to maximise the "
        "campaign's expected incremental profit, with the expected spend (P(redeem) x (offer "
        "cost + discount) + contact cost) within the budget, under consent, validity, "
        "eligibility, the weekly contact cap and the per-offer cooldown. A seeded random "
        "`holdout_share` of the assigned customers gets no offer, for measurement; each row "
        "has a decision id and the propensity of its action. The plan is compared with the "
        "best single offer to everyone and with everyone at high risk on the same budget. "
        "Unless `dry_run`, every row is logged as a decision (report outcomes with POST "
        "/v1/decisions/{decision_id}/outcome) and the CSV is kept under the Kizuna home. "
        "`format=csv` answers the rows as text/csv."
    ),
    responses={
        200: {"content": {"text/csv": {}}},
        400: documented("an unknown, off-channel, expired or unscored offer"),
        404: documented("customer ids the score book does not hold"),
        503: MODEL_MISSING,
    },
)
def plan(request: Request, book: Book, body: CampaignRequest, _=OffersKey) -> Any:
    state = request.app.state
    book.champions.require(("offers",), "the campaign planner")
    try:
        audience = _audience(request, book, body.audience)
        campaign = plan_campaign(
            audience,
            state.catalog,
            state.policy,
            state.decisions,
            channel=body.channel,
            budget=body.budget,
            offer_ids=body.offer_ids,
            holdout_share=body.holdout_share,
            seed=body.seed,
            mean_order_value=book.mean_order_value,
        )
    except UnknownCustomersError as exc:
        raise Problem(404, str(exc), field=exc.field) from exc
    except CampaignError as exc:
        raise Problem(400, str(exc), field=exc.field) from exc
    if not body.dry_run:
        commit_plan(campaign, state.decisions, state.settings, dict(book.champions.versions))
    if body.format == "csv":
        return Response(
            to_csv(campaign),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{campaign.campaign_id}.csv"'},
        )
    return _response(campaign, body.dry_run)
