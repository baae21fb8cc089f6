"""GET /v1/models, /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from kizuna.serving.deps import Book, ScoreKey
from kizuna.serving.errors import Problem, documented
from kizuna.serving.metrics import REGISTRY
from kizuna.serving.routes.scores import MissingModel

router = APIRouter(tags=["service"])


class ServedModel(BaseModel):
    registered_model: str = Field(description="The MLflow registered model.")
    version: str
    alias: Literal["champion"]


class Models(BaseModel):
    models: dict[str, ServedModel]
    missing_models: list[MissingModel]
    customers: int = Field(description="Customers in the score book.")
    scored_at: str = Field(description="When the book was last (re)scored, ISO 8601.")


class Health(BaseModel):
    status: Literal["ok"]


class InboxStatus(BaseModel):
    pending: int = Field(description="Events acknowledged (202) and not applied yet.")
    failed_attempts: int = Field(description="Failed attempts at applying a batch (retries).")
    poisoned_batches: int = Field(
        description="Batches moved aside after every retry failed; their events were not "
        "applied and may be sent again once the cause is fixed."
    )
    poison_file: str | None = Field(description="Where those batches are, with the reason.")
    last_error: str | None = Field(description="The last failure applying events.")


class Readiness(BaseModel):
    status: Literal["ready", "degraded"]
    customers: int = Field(description="Customers in the score book.")
    models: dict[str, str] = Field(description="Served champion version per model.")
    missing_models: list[MissingModel]
    reasons_ready: float = Field(description="Share of the book whose reasons are filled in.")
    page_warming: list[str] = Field(
        description="The marketer page's figures still being prepared after start-up."
    )
    events: InboxStatus | None = Field(description="The event inbox (null before it starts).")


@router.get(
    "/v1/models",
    response_model=Models,
    summary="The champion models being served, and the missing ones with the reason",
)
def models(book: Book, _: ScoreKey) -> dict[str, Any]:
    return {
        "models": {
            name: {"registered_model": f"kizuna-{name}", "version": version, "alias": "champion"}
            for name, version in book.champions.versions.items()
        },
        "missing_models": book.champions.missing_models(),
        "customers": len(book),
        "scored_at": book.built_at.isoformat(),
    }


@router.get("/healthz", response_model=Health, summary="The process is up (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Models and features are loaded (no key needed)",
    description="200 once at least one champion scores the customers: `status` is `ready` "
    "with every model, `degraded` with some missing (`missing_models` says why); 503 "
    "problem+json with the reason before then or when no champion exists.",
    response_model=Readiness,
    responses={503: documented("not loaded yet, or no champion model at all")},
)
def readyz(request: Request) -> dict[str, Any]:
    book = getattr(request.app.state, "book", None)
    if book is None:
        error = getattr(request.app.state, "load_error", None)
        raise Problem(503, error or "the models are loading; retry in a few seconds")
    return {
        "status": "degraded" if book.champions.missing else "ready",
        "customers": len(book),
        "models": book.champions.versions,
        "missing_models": book.champions.missing_models(),
        # Reasons are filled in the background after start-up; a customer asked for
        # before then gets theirs on the spot.
        "reasons_ready": round(book.reasons_share(), 4),
        # The marketer page's figures still being prepared after start-up (a page asked
        # for before then is computed on the spot, or says it is being computed).
        "page_warming": list(getattr(request.app.state, "page_warming", [])),
        # Acknowledged events not applied yet, and batches moved aside after every retry.
        "events": inbox.status() if (inbox := getattr(request.app.state, "inbox", None)) else None,
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
