"""GET /v1/kpis: the business KPIs (active customers, churn and retention, cohorts, repeat
rate, revenue, CLV, value at risk, NPS, CSAT, segment and tier sizes), each with its
definition and its change since the last period (serving/kpis.py)."""

from __future__ import annotations

import re
import threading
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator, BeforeValidator

from kizuna.serving.deps import ListsKey, within_years
from kizuna.serving.errors import Problem, documented
from kizuna.serving.kpis import ACTIVE_DAYS, KpiCache, KpiError, Kpis
from kizuna.serving.routes.lists import known_parameters
from kizuna.settings import get_settings

router = APIRouter(prefix="/v1", tags=["kpis"], dependencies=[Depends(known_parameters)])

_CACHE_LOCK = threading.Lock()

ActiveDays = Annotated[
    int,
    Query(
        ge=1,
        le=3650,
        description="An order within this many days makes a customer active (and churned "
        "once it passes).",
    ),
]


def _iso_only(value: object) -> object:
    """A moment written as ISO 8601 (pydantic alone also takes "0.5" as a Unix time)."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{value!r} is not an ISO 8601 date or time; write e.g. 2025-06-30")
    return value


AsOf = Annotated[
    datetime | None,
    BeforeValidator(_iso_only),
    AfterValidator(lambda value: None if value is None else within_years(value)),
    Query(
        description="Measure up to this moment (ISO 8601; no offset means UTC); default: "
        "the latest order in the lake."
    ),
]


def kpi_cache(request: Request) -> KpiCache:
    """The app's KPI cache, created on first use."""
    state = request.app.state
    with _CACHE_LOCK:
        cache = getattr(state, "kpis", None)
        if cache is None:
            cache = state.kpis = KpiCache()
    return cache


@router.get(
    "/kpis",
    summary="Business KPIs with their definitions and their change since the last period",
    description="Lake KPIs are measured up to `as_of` (default: the latest order). Monthly "
    "KPIs report the last complete calendar month against the month before; point-in-time "
    "KPIs report `as_of` against one month earlier; segment and tier sizes are compared "
    "with the feature snapshot nearest to 30 days before the latest. CLV and value at risk "
    "come from the score book (customers who allow profiling) and are null, with a note, "
    "while the models they need are not served. Answers are cached until the lake changes.",
    response_model=Kpis,
    responses={
        422: documented("a parameter is invalid or unknown"),
        503: documented("the lake holds no orders yet"),
    },
)
def kpis(
    request: Request, _: ListsKey, active_days: ActiveDays = ACTIVE_DAYS, as_of: AsOf = None
) -> Kpis:
    state = request.app.state
    settings = getattr(state, "settings", None) or get_settings()
    # The lake KPIs need no model: before the score book is built (or without any
    # champion) they are answered, and the score KPIs say why they are missing.
    book = getattr(state, "book", None)
    table = None if book is None else book.table
    try:
        current = getattr(state, "kpis_now", None)
        if current is not None and active_days == ACTIVE_DAYS and as_of is None:
            return current.get()  # the default figures follow the lake behind the requests
        return kpi_cache(request).get(settings, table, active_days=active_days, as_of=as_of)
    except KpiError as exc:
        raise Problem(503, str(exc)) from exc


__all__ = ["router"]
