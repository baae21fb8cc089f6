"""POST /v1/events: purchases and engagement, durable before the 202, idempotent by id."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from kizuna.features.contracts import EVENT_TYPES, LOYALTY_TIERS
from kizuna.serving.deps import Moment, require
from kizuna.serving.errors import Problem, documented

router = APIRouter(prefix="/v1", tags=["events"])
MAX_EVENTS = 1_000
PROFILE_CHANGE = "profile_change"
EventType = Literal["purchase", PROFILE_CHANGE, *EVENT_TYPES]  # type: ignore[valid-type]


class ProfileChange(BaseModel):
    """The fields that changed; those left out are unchanged."""

    model_config = ConfigDict(extra="forbid")
    consent_email: bool | None = None
    consent_sms: bool | None = None
    consent_push: bool | None = None
    consent_profiling: bool | None = Field(
        None, description="false: Kizuna stops scoring and profiling the customer."
    )
    loyalty_tier: Literal[LOYALTY_TIERS] | None = None  # type: ignore[valid-type]
    country: str | None = Field(None, min_length=1)


class Event(BaseModel):
    event_id: str = Field(min_length=1, description="Unique; a repeated id is a duplicate.")
    customer_id: str = Field(min_length=1)
    type: EventType  # type: ignore[valid-type]
    occurred_at: Moment
    amount: float | None = Field(None, ge=0, description="Order value (purchases).")
    value: float | None = Field(None, description="Score of an NPS / CSAT / review answer.")
    channel: Literal["email", "sms", "push", "web", "app"] | None = None
    changes: ProfileChange | None = Field(
        None,
        description="profile_change events: the consent, tier or country that changed "
        "(kept as history; takes effect in scores, lists and offers within seconds).",
    )

    @model_validator(mode="after")
    def fields_fit_the_type(self) -> Event:
        if self.type == "purchase" and self.amount is None:
            raise ValueError("a purchase needs an amount")
        if self.type == PROFILE_CHANGE and (
            self.changes is None or not self.changes.model_dump(exclude_none=True)
        ):
            raise ValueError('a profile_change needs changes, e.g. {"consent_email": false}')
        if self.type != PROFILE_CHANGE and self.changes is not None:
            raise ValueError("only a profile_change event has changes")
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
                        {
                            "event_id": "evt-3",
                            "customer_id": "C000001",
                            "type": "profile_change",
                            "occurred_at": "2026-01-05T10:02:00Z",
                            "changes": {"consent_sms": False, "loyalty_tier": "gold"},
                        },
                    ]
                }
            ]
        }
    )
    events: list[Event] = Field(min_length=1)


class EventsAccepted(BaseModel):
    accepted: int = Field(description="New events, logged durably before this answer.")
    duplicates: int = Field(description="Events whose id was seen before (changed nothing).")


@router.post(
    "/events",
    status_code=202,
    response_model=EventsAccepted,
    responses={
        409: documented("a customer of the batch was erased (docs/privacy.md)"),
        413: documented(f"more than {MAX_EVENTS:,} events in one request"),
    },
    summary="Push purchase, engagement and profile-change events",
    description=(
        f"1 to {MAX_EVENTS:,} events. Written to a synced log before the 202 (an "
        "acknowledged event survives a crash); an event id seen before is counted as a "
        "duplicate and changes nothing. The events then land in the lake and the touched "
        "customers' features and scores are refreshed, usually within seconds."
    ),
)
def push_events(
    request: Request, body: EventsRequest, _=Depends(require("events"))
) -> EventsAccepted:
    if len(body.events) > MAX_EVENTS:
        raise Problem(
            413,
            f"{len(body.events):,} events in one request; send at most {MAX_EVENTS:,}",
            field="events",
        )
    tombstones = getattr(request.app.state, "tombstones", None)
    if tombstones is not None and len(tombstones):
        ids = pd.Series([e.customer_id for e in body.events])
        erased = ids[tombstones.erased_mask(ids).to_numpy()]
        if not erased.empty:
            raise Problem(
                409,
                f"customer {erased.iloc[0]!r} was erased; events cannot bring them back. "
                "Ingest a new customer record (with a signup_at after the erasure and "
                "their consent) first, then send the events again",
                field="events.customer_id",
            )
    inbox = request.app.state.inbox
    accepted, duplicates = inbox.accept([e.model_dump(mode="json") for e in body.events])
    return EventsAccepted(accepted=accepted, duplicates=duplicates)
