"""GET /v1/models, /healthz, /readyz, /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kizuna.serving.deps import Book, ScoreKey
from kizuna.serving.errors import Problem, documented
from kizuna.serving.metrics import REGISTRY

router = APIRouter(tags=["service"])


@router.get(
    "/v1/models",
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


@router.get("/healthz", summary="The process is up (no key needed)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Models and features are loaded (no key needed)",
    description="200 once at least one champion scores the customers: `status` is `ready` "
    "with every model, `degraded` with some missing (`missing_models` says why); 503 "
    "problem+json with the reason before then or when no champion exists.",
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
    }


@router.get("/metrics", summary="Prometheus metrics")
def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
