"""Errors as ``application/problem+json`` (RFC 9457), naming the field that was wrong."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kizuna.serving.scoring import MissingModelError, UnknownCustomerError

PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Missing or unknown API key",
    403: "The API key lacks a scope",
    404: "Not found",
    413: "Batch too large",
    422: "Invalid request body",
    503: "Not ready",
}


def documented(description: str) -> dict[str, Any]:
    """A problem response as a route's ``responses=`` entry documents it."""
    return {"description": description, "content": {PROBLEM: {}}}


# The 503 of a route that needs a model without a champion.
MODEL_MISSING = documented(
    "a model this answer needs has no champion: `detail` says which and what to run; "
    "`missing_models` lists them with the reason"
)


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status}
    body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Problem(Exception):
    """Raised by routes and dependencies; answered as problem+json."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def _field(location: tuple | list) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(location[-1] if location else "")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem(exc.status, exc.detail, **exc.extra)

    @app.exception_handler(MissingModelError)
    async def _missing_model(request: Request, exc: MissingModelError) -> JSONResponse:
        missing = [{"model": name, "reason": reason} for name, reason in exc.missing.items()]
        return problem(503, str(exc), title="A model is not served", missing_models=missing)

    @app.exception_handler(UnknownCustomerError)
    async def _unknown_customer(request: Request, exc: UnknownCustomerError) -> JSONResponse:
        return problem(
            404,
            str(exc),
            title="Unknown customer",
            field="customer_id",
            customer_id=exc.customer_id,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        return problem(
            422, f"{first['field']}: {first['message']}", field=first["field"], errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail))
