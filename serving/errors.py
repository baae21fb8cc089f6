"""Errors as ``application/problem+json`` (RFC 9457), naming the field that was wrong."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kizuna.serving.scoring import MissingModelError, UnknownCustomerError

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Missing or unknown API key",
    403: "The API key lacks a scope",
    404: "Not found",
    409: "Conflict",
    413: "Batch too large",
    422: "Invalid request",
    500: "Internal error",
    503: "Not ready",
}

# The body of every error answer (RFC 9457), as the OpenAPI schema documents it.
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "An error (RFC 9457). `detail` says what was wrong and what to do; "
    "`field` names the request field at fault, when there is one.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
        "missing_models": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"model": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
        "error_id": {"type": "string", "description": "Quote it when reporting a 500."},
    },
    "additionalProperties": True,
}
# Every /v1 route needs a key: what its absence or lack of scope answers.
KEY_ERRORS = {
    "401": "no API key, or an unknown, revoked or expired one",
    "403": "the API key lacks the scope this route needs",
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

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # No route answers a bare 500: a problem with an id the server log also has.
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "unexpected error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc
        )
        return problem(
            500,
            f"Kizuna failed on this request (error {error_id}); the server log has the "
            "details under that id. Retry, and report it if it persists.",
            error_id=error_id,
        )

    app.openapi = lambda: _openapi(app)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with every error answer documented as the problem+json it is (its
    default says ``application/json`` for 422), and 401/403 on every route that needs a key."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        openapi_version=app.openapi_version,
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    problem_content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                for code, description in KEY_ERRORS.items():
                    responses.setdefault(code, {"description": description})
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "the body is not valid JSON"})
            for code, response in responses.items():
                if code[0] in "45":
                    response["content"] = problem_content
                    if code == "422" and response.get("description") == "Validation Error":
                        response["description"] = "a field is missing or invalid: `field` names it"
    # FastAPI's own validation-error shapes are no longer referenced.
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    app.openapi_schema = schema
    return schema
