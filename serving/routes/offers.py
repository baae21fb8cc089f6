"""POST /v1/offers/next-best and POST /v1/decisions/{id}/outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.decisions import decide
from kizuna.serving.deps import Book, Moment, require
from kizuna.serving.errors import MODEL_MISSING, Problem, documented

router = APIRouter(prefix="/v1", tags=["offers"])
OffersKey = Depends(require("offers"))


class Context(BaseModel):
    """Optional circumstances of the decision."""

    budget: float | None = Field(
        None, ge=0, description="Most expected offer cost to spend on this customer."
    )
    at: Moment | None = Field(
        None, description="Decide as of this moment (default now), with its time zone."
    )


class NextBestRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"customer_id": "C000001", "channel": "email", "context": {"budget": 5}}]
        }
    )
    customer_id: str = Field(min_length=1)
    channel: Literal[CONSENT_CHANNELS]
    context: Context = Field(default_factory=Context)


class CandidateOffer(BaseModel):
    """One offer of the channel, ranked by expected incremental profit."""

    offer_id: str
    uplift: float = Field(description="P(buy | offer) - P(buy | no offer).")
    p_redeem: float = Field(description="P(buy | offer): the chance the offer is redeemed.")
    expected_incremental_profit: float = Field(
        description="uplift x margin - P(redeem) x offer cost - contact cost."
    )
    allowed: bool = Field(description="Validity, eligibility, cooldown and budget allow it.")
    reason: str


class ChosenOffer(BaseModel):
    offer_id: str
    uplift: float
    p_redeem: float
    expected_incremental_profit: float


class Decision(BaseModel):
    """A logged decision: the action, the probability it was chosen with, and why."""

    decision_id: str = Field(description="Report outcomes to /v1/decisions/{decision_id}/outcome.")
    customer_id: str
    channel: Literal[CONSENT_CHANNELS]
    decided_at: str = Field(description="ISO 8601, UTC.")
    cold_start: bool = Field(description="No order yet: the offers of a new customer.")
    model_versions: dict[str, str]
    action: str = Field(description="The chosen offer_id, or `no_offer`.")
    offer: ChosenOffer | None
    propensity: float = Field(ge=0, le=1, description="P(this action) under the policy.")
    explored: bool = Field(description="Chosen at random (the exploration share).")
    reason: str
    candidates: list[CandidateOffer]


class OutcomeAccepted(BaseModel):
    accepted: bool
    decision_id: str
    outcome: Literal["shown", "clicked", "redeemed", "ignored"]
    revenue: float
    at: str = Field(description="ISO 8601, UTC.")


@router.post(
    "/offers/next-best",
    response_model=Decision,
    summary="The offer that adds the most expected profit, or none",
    description=(
        "Offers of the channel ranked by expected incremental profit (uplift times margin "
        "minus expected offer cost minus contact cost), each with its uplift, P(redeem) and "
        "reason; `no_offer` when nothing adds value. Consent, validity, eligibility, the "
        "weekly contact cap, the per-offer cooldown and the optional budget apply. The "
        "decision has an id and the probability with which its action was chosen (a small "
        "exploration share is random), and is logged for off-policy evaluation. A customer "
        "without a feature vector yet gets the offers of a new customer (`cold_start`)."
    ),
    responses={
        404: documented("Kizuna has never seen the customer: ingest them or send an event"),
        503: MODEL_MISSING,
    },
)
def next_best(request: Request, book: Book, body: NextBestRequest, _=OffersKey) -> dict[str, Any]:
    state = request.app.state
    outputs, profile = book.offer_inputs(body.customer_id)
    return decide(
        customer_id=body.customer_id,
        channel=body.channel,
        record=book.score(body.customer_id),
        outputs=outputs,
        profile=profile,
        catalog=state.catalog,
        policy=state.policy,
        log=state.decisions,
        at=(body.context.at or datetime.now(UTC)).astimezone(UTC),
        budget=body.context.budget,
        rng=state.rng,
        model_versions=dict(book.champions.versions),
    )


class Outcome(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"outcome": "redeemed", "revenue": 42.5}]}
    )
    outcome: Literal["shown", "clicked", "redeemed", "ignored"]
    revenue: float = Field(0.0, ge=0, description="Revenue attributed to the decision.")
    at: Moment | None = None


@router.post(
    "/decisions/{decision_id}/outcome",
    status_code=202,
    response_model=OutcomeAccepted,
    summary="Report what happened to a decision",
    responses={404: documented("no such decision: use the decision_id of a next-best answer")},
)
def outcome(request: Request, decision_id: str, body: Outcome, _=OffersKey) -> dict[str, Any]:
    at = (body.at or datetime.now(UTC)).astimezone(UTC).isoformat()
    stored = request.app.state.decisions.outcome(
        decision_id, {"outcome": body.outcome, "revenue": body.revenue, "at": at}
    )
    if stored is None:
        raise Problem(
            404,
            f"no decision {decision_id!r}; use the decision_id returned by "
            "POST /v1/offers/next-best",
            field="decision_id",
        )
    return {"accepted": True, **stored}
