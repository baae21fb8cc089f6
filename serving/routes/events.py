"""POST /v1/events: purchases and engagement, durable before the 202, idempotent by id."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from kizuna.features.contracts import EVENT_TYPES
from kizuna.serving.deps import require
from kizuna.serving.errors import Problem

router = APIRouter(prefix="/v1", tags=["events"])
MAX_EVENTS = 1_000
EventType = Literal["purchase", *EVENT_TYPES]  # type: ignore[valid-type]


class Event(BaseModel):
    event_id: str = Field(min_length=1, description="Unique; a repeated id is a duplicate.")
    customer_id: str = Field(min_length=1)
    type: EventType  # type: ignore[valid-type]
    occurred_at: AwareDatetime
    amount: float | None = Field(None, ge=0, description="Order value (purchases).")
    value: float | None = Field(None, description="Score of an NPS / CSAT / review answer.")
    channel: Literal["email", "sms", "push", "web", "app"] | None = None

    @model_validator(mode="after")
    def purchase_has_amount(self) -> Event:
        if self.type == "purchase" and self.amount is None:
            raise ValueError("a purchase needs an amount")
        return self


class EventsRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "evt-1",
                            "customer_id": "C000001",
                            "type": "purchase",
                            "occurred_at": "2026-01-05T10:00:00Z",
                            "amount": 42.5,
                        },
                        {
                            "event_id": "evt-2",
                            "customer_id": "C000001",
                            "type": "session",
                            "occurred_at": "2026-01-05T09:55:00Z",
                        },
                    ]
                }
            ]
        }
    )
    events: list[Event] = Field(min_length=1)


@router.post(
    "/events",
    status_code=202,
    summary="Push purchase and engagement events",
    description=(
        f"1 to {MAX_EVENTS:,} events. Written to a synced log before the 202 (an "
        "acknowledged event survives a crash); an event id seen before is counted as a "
        "duplicate and changes nothing. The events then land in the lake and the touched "
        "customers' features and scores are refreshed, usually within seconds."
    ),
)
def push_events(
    request: Request, body: EventsRequest, _=Depends(require("events"))
) -> dict[str, Any]:
    if len(body.events) > MAX_EVENTS:
        raise Problem(
            413,
            f"{len(body.events):,} events in one request; send at most {MAX_EVENTS:,}",
            field="events",
        )
    inbox = request.app.state.inbox
    accepted, duplicates = inbox.accept([e.model_dump(mode="json") for e in body.events])
    return {"accepted": accepted, "duplicates": duplicates}
