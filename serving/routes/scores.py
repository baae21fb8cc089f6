"""POST /v1/scores: churn, timing, value, segment and reasons for 1 to 1,000 customers."""

from __future__ import annotations

import json

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kizuna.serving.deps import Book, ScoreKey
from kizuna.serving.errors import Problem, documented
from kizuna.serving.metrics import SCORES_SERVED
from kizuna.serving.scoring import UnknownCustomerError

router = APIRouter(prefix="/v1", tags=["scores"])

MAX_BATCH = 1_000


class ScoresRequest(BaseModel):
    """Customers to score."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"customer_ids": ["C000001", "C000002"]}]}
    )
    customer_ids: list[str] = Field(
        min_length=1, description=f"1 to {MAX_BATCH:,} customer ids, as the lake knows them."
    )


class Churn(BaseModel):
    probability: float = Field(description="P(no purchase within the churn horizon).")
    band: str = Field(description="low, medium or high.")


class Value(BaseModel):
    predicted: float = Field(description="Expected spend over the next `window_days` days.")
    window_days: int = Field(
        description="The value model's window: 365 days, shorter when the history was short."
    )


class Repurchase(BaseModel):
    """When the customer buys next. Days count from ``features_as_of``; a day the timing
    model cannot place within its horizon (90 days) is null, never extrapolated."""

    p_buy_7d: float = Field(description="P(a purchase within 7 days).")
    p_buy_14d: float
    p_buy_30d: float
    p_buy_60d: float
    p_buy_90d: float = Field(description="P(a purchase within 90 days, the horizon).")
    median_days: float | None = Field(
        description="Days to the median next purchase (P(bought) reaches 50%)."
    )
    expected_date: str | None = Field(
        description="The expected next purchase: the median day (ISO date); null when "
        "`unlikely_within_days` is set."
    )
    expected_date_p25: str | None = Field(
        description="The range's start: the day P(bought) reaches 25%."
    )
    expected_date_p75: str | None = Field(
        description="The range's end: the day P(bought) reaches 75% (null beyond the horizon)."
    )
    unlikely_within_days: int | None = Field(
        description="The horizon (90) when a purchase within it is less likely than not "
        "(no median day); null otherwise."
    )
    overdue: bool | None = Field(
        description="Past their own cycle: days since the last order above their median gap "
        "between orders; null with fewer than two order days."
    )


class CustomerScore(BaseModel):
    """One customer's scores; the block of a model without a champion is null."""

    customer_id: str
    cold_start: bool = Field(
        description="True when the customer has no order yet: the scores are the models' "
        "estimates for a new customer (from sign-up and engagement alone, or, before their "
        "features are computed, those of a customer with no history), not personal ones."
    )
    scored: bool = Field(description="False when the customer opted out of profiling.")
    reason: str | None = Field(None, description="Why there are no scores (scored: false).")
    churn: Churn | None = None
    repurchase: Repurchase | None = None
    value: Value | None = None
    value_at_risk: float | None = Field(
        None, description="churn.probability times value.predicted (null without either)."
    )
    rfm_segment: str | None = None
    reasons: list[str] | None = Field(None, description="Top churn reasons in plain words.")
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="The champion versions that scored (served ones)."
    )
    features_as_of: str | None = None
    feature_age_hours: float | None = None


class MissingModel(BaseModel):
    model: str
    registered_model: str
    reason: str = Field(description="Why it is not served and what to run.")


class ScoresResponse(BaseModel):
    """One record per known customer, in the order asked."""

    scores: list[CustomerScore]
    unknown_customers: list[str] = Field(
        description="Ids Kizuna has never seen (no customer row, order or event), in the "
        "order asked; they get no record."
    )
    missing_models: list[MissingModel] = Field(
        description="Models without a champion: their blocks are null in every record."
    )


@router.post(
    "/scores",
    response_model=ScoresResponse,
    summary="Score customers",
    description=(
        "For each customer: churn probability and band; P(purchase within 7/14/30/60/90 "
        "days), the expected (median) next purchase date with its P25-P75 range, or "
        "`unlikely_within_days: 90`, and whether the customer is `overdue`; predicted "
        "value over the value model's "
        "window (`value.window_days`); value at risk (churn times value); RFM segment; the "
        "top reasons in plain words; the model versions; and when the features were "
        "computed. A customer with no order yet gets `cold_start: true` (scores of a new "
        "customer); one who opted out of profiling gets `scored: false` and no scores. Ids "
        "Kizuna has never seen are listed in `unknown_customers` (404 when none of the ids "
        "is known). A model without a champion is listed in `missing_models` and its block "
        "is null."
    ),
    responses={
        404: documented("none of the customers is known: ingest them or send an event first"),
        413: documented(f"more than {MAX_BATCH:,} customers in one request"),
    },
)
async def score(book: Book, _: ScoreKey, body: ScoresRequest = Body()) -> Response:
    if len(body.customer_ids) > MAX_BATCH:
        raise Problem(
            413,
            f"{len(body.customer_ids):,} customers in one request; send at most "
            f"{MAX_BATCH:,} per request, or use `kizuna score` for everyone",
            field="customer_ids",
        )
    known, unknown = [], []
    for customer in body.customer_ids:
        (known if book.knows(customer) else unknown).append(customer)
    if not known:
        detail = (
            str(UnknownCustomerError(unknown[0]))
            if len(unknown) == 1
            else f"none of the {len(unknown):,} customers is known to Kizuna: ingest the "
            "customers or send an event for them (POST /v1/events) first"
        )
        raise Problem(
            404,
            detail,
            title="Unknown customer",
            field="customer_ids",
            unknown_customers=unknown,
        )
    # Records are serialized once and reused: the hot path is a dict read and a join.
    parts = [book.score_json(c) for c in known]
    SCORES_SERVED.inc(len(parts))
    tail = json.dumps(
        {"unknown_customers": unknown, "missing_models": book.champions.missing_models()},
        separators=(",", ":"),
    ).encode()
    body_bytes = b'{"scores":[' + b",".join(parts) + b"]," + tail[1:]
    return Response(body_bytes, media_type="application/json")
