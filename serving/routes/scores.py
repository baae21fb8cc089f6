"""POST /v1/scores: churn, timing, value, segment and reasons for 1 to 1,000 customers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from kizuna.serving.deps import Book, ScoreKey
from kizuna.serving.errors import Problem
from kizuna.serving.metrics import SCORES_SERVED

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


class ScoresResponse(BaseModel):
    """One record per requested customer, in the order asked."""

    scores: list[dict[str, Any]]


@router.post(
    "/scores",
    response_model=ScoresResponse,
    summary="Score customers",
    description=(
        "For each customer: churn probability and band; P(purchase within 7/14/30/60/90 "
        "days) and the expected next purchase date; 12-month value; value at risk (churn "
        "times value); RFM segment; the top reasons in plain words; the model versions; and "
        "when the features were computed. A customer the store does not know gets "
        "cold-start scores with `cold_start: true`; one who opted out of profiling gets "
        "`scored: false` and no scores."
    ),
    responses={413: {"description": f"more than {MAX_BATCH:,} customers in one request"}},
)
async def score(book: Book, _: ScoreKey, body: ScoresRequest = Body()) -> Response:
    if len(body.customer_ids) > MAX_BATCH:
        raise Problem(
            413,
            f"{len(body.customer_ids):,} customers in one request; send at most "
            f"{MAX_BATCH:,} per request, or use `kizuna score` for everyone",
            field="customer_ids",
        )
    # Records are serialized once and reused: the hot path is a dict read and a join.
    parts = [book.score_json(c) for c in body.customer_ids]
    SCORES_SERVED.inc(len(parts))
    return Response(b'{"scores":[' + b",".join(parts) + b"]}", media_type="application/json")
