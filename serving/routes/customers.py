"""DELETE /v1/customers/{id} (erasure) and GET /v1/customers/{id}/export (everything held),
both with the admin scope (features/privacy.py does the work)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from kizuna.features.lake import LakeBusyError
from kizuna.features.privacy import PrivacyError, erase, export
from kizuna.serving.deps import require
from kizuna.serving.errors import Problem, documented
from kizuna.serving.keys import ApiKey

router = APIRouter(prefix="/v1/customers", tags=["privacy"])
AdminKey = Annotated[ApiKey, Depends(require("admin"))]


class Erasure(BaseModel):
    """What an erasure removed."""

    customer_id: str
    erased_at: str = Field(description="ISO 8601, UTC; the tombstone's moment.")
    removed: dict[str, int] = Field(description="Rows or lines removed, by place.")
    scores_dropped: bool = Field(description="The running server's score book held them.")


class Export(BaseModel):
    """Everything Kizuna holds on the customer, by place."""

    customer_id: str
    exported_at: str
    lake: dict[str, list[dict[str, Any]]]
    quarantine: list[dict[str, Any]]
    features: dict[str, list[dict[str, Any]]]
    decisions: list[dict[str, Any]]
    outcomes: list[dict[str, Any]]
    scores: dict[str, Any] | None = Field(description="The record the API serves, if scored.")


def erase_now(request: Request, customer_ids: set[str]):
    """Erase from the home and from this server's memory (book, decisions, timelines)."""
    state = request.app.state
    report = erase(state.settings, customer_ids, decisions=state.decisions)
    book = getattr(state, "book", None)
    held = book.forget(customer_ids) if book is not None else 0
    return report, held


@router.delete(
    "/{customer_id}",
    response_model=Erasure,
    summary="Erase a customer (right to be forgotten)",
    description="Removes the customer from the lake, quarantine, feature snapshots, push "
    "log, Feast online store, event inbox, decision and outcome logs, campaign exports, "
    "batch files and the score book, and keeps a tombstone (a keyed hash of the id) so "
    "neither an ingest nor an event brings them back without a new customer record "
    "(docs/privacy.md).",
    responses={
        404: documented("Kizuna holds nothing on this customer"),
        409: documented("an ingest is writing to the lake; retry after it"),
    },
)
async def delete_customer(request: Request, customer_id: str, _: AdminKey) -> Erasure:
    book = getattr(request.app.state, "book", None)
    known = book is not None and book.knows(customer_id)
    try:
        report, held = await asyncio.to_thread(erase_now, request, {customer_id})
    except LakeBusyError as exc:
        raise Problem(409, str(exc)) from exc
    if not known and not report.removed:
        raise Problem(
            404, f"Kizuna holds nothing on a customer {customer_id!r}", field="customer_id"
        )
    return Erasure(
        customer_id=customer_id,
        erased_at=report.erased_at.isoformat(),
        removed=report.removed,
        scores_dropped=bool(held),
    )


@router.get(
    "/{customer_id}/export",
    response_model=Export,
    summary="Everything Kizuna holds on a customer (right of access)",
    responses={404: documented("Kizuna holds nothing on this customer (or erased them)")},
)
async def export_customer(request: Request, customer_id: str, _: AdminKey) -> Export:
    state = request.app.state
    try:
        held = await asyncio.to_thread(export, state.settings, customer_id)
    except PrivacyError as exc:
        raise Problem(404, str(exc), field="customer_id") from exc
    book = getattr(state, "book", None)
    scores = None
    if book is not None and book.knows(customer_id):
        scores = book.score(customer_id)
    return Export(**held, scores=scores)
