"""POST /v1/offers/next-best and POST /v1/decisions/{id}/outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kizuna.serving.decisions import decide
from kizuna.serving.deps import Book, require
from kizuna.serving.errors import MODEL_MISSING, Problem, documented

router = APIRouter(prefix="/v1", tags=["offers"])
OffersKey = Depends(require("offers"))


class Context(BaseModel):
    """Optional circumstances of the decision."""

    budget: float | None = Field(
        None, ge=0, description="Most expected offer cost to spend on this customer."
    )
    at: AwareDatetime | None = Field(
        None, description="Decide as of this moment (default now), with its time zone."
    )


class NextBestRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"customer_id": "C000001", "channel": "email", "context": {"budget": 5}}]
        }
    )
    customer_id: str = Field(min_length=1)
    channel: Literal["email", "sms", "push"]
    context: Context = Field(default_factory=Context)


@router.post(
    "/offers/next-best",
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
    at: AwareDatetime | None = None


@router.post(
    "/decisions/{decision_id}/outcome",
    status_code=202,
    summary="Report what happened to a decision",
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
