"""GET /v1/lists/<list>: the lists marketers pull (at risk, due to repurchase, replenishment
per category, top value, win-back, never converted), filtered, sorted and paged.

Every list takes the same filters (:class:`Narrowing`); a query parameter no list knows
is a 422 that names it, so a typo ("segmnt=Loyal") never returns the unfiltered list.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from kizuna.features.contracts import CONSENT_CHANNELS
from kizuna.serving.deps import Book, ListsKey
from kizuna.serving.errors import MODEL_MISSING, Problem, documented
from kizuna.serving.lists import (
    RISK_BANDS,
    SPECS,
    ListError,
    ListFilter,
    ListPage,
    run,
    to_csv,
    to_json,
)
from kizuna.serving.scoring import ScoreBook


def _query_names(dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_parameters(request: Request) -> None:
    """422 for a query parameter the route does not declare (named, with the known ones)."""
    route = request.scope.get("route")
    if route is None:
        return
    known = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Problem(
            422,
            f"unknown query parameter(s) {', '.join(unknown)}; this route takes "
            f"{', '.join(sorted(known))}",
            field=unknown[0],
            errors=[{"field": u, "message": "unknown parameter"} for u in unknown],
        )


router = APIRouter(prefix="/v1/lists", tags=["lists"], dependencies=[Depends(known_parameters)])

Format = Literal["json", "csv"]


class Narrowing:
    """The filters, order and page every list takes."""

    def __init__(
        self,
        min_churn: float | None = Query(
            None, ge=0, le=1, description="Lowest churn probability (at-risk: default 0.5)."
        ),
        max_churn: float = Query(1.0, ge=0, le=1, description="Highest churn probability."),
        risk_band: list[Literal["low", "medium", "high"]] | None = Query(
            None, description="Risk band(s) to keep."
        ),
        min_value: float = Query(
            0.0, ge=0, description="Lowest predicted value (over `value_window_days`)."
        ),
        segment: list[str] | None = Query(None, description="RFM segment(s) to keep."),
        tier: list[str] | None = Query(None, description="Loyalty tier(s) to keep."),
        country: list[str] | None = Query(None, description="Country code(s) to keep."),
        channel: Literal[CONSENT_CHANNELS] | None = Query(
            None, description="Keep only customers who consent to this channel."
        ),
        not_contacted_days: int | None = Query(
            None, ge=0, description="Keep customers sent no offer in this many days."
        ),
        category: str | None = Query(
            None,
            description="Replenishment: the product category; other lists: the customer's "
            "top category.",
        ),
        sort: str | None = Query(None, description="Column to sort by (the list's default)."),
        order: Literal["asc", "desc"] | None = Query(None, description="Sort direction."),
        offset: int = Query(0, ge=0, description="Rows to skip (paging)."),
        limit: int = Query(100, ge=1, le=100_000, description="Most rows to return."),
        format: Format = Query("json", description="json or csv (reasons: a JSON array)."),
    ) -> None:
        self.format = format
        self.min_churn = min_churn
        self.rest = {
            "max_churn": max_churn,
            "risk_bands": tuple(risk_band or ()),
            "min_value": min_value,
            "segments": tuple(segment or ()),
            "tiers": tuple(tier or ()),
            "countries": tuple(country or ()),
            "channel": channel,
            "not_contacted_days": not_contacted_days,
            "category": category,
            "sort": sort,
            "descending": None if order is None else order == "desc",
            "offset": offset,
            "limit": limit,
        }

    def filter(self, default_min_churn: float = 0.0) -> ListFilter:
        floor = default_min_churn if self.min_churn is None else self.min_churn
        return ListFilter(min_churn=floor, **self.rest)


Narrow = Annotated[Narrowing, Depends()]
DueWithin = Annotated[
    int, Query(ge=0, le=365, description="Due within this many days (or already past).")
]


class ListCustomer(BaseModel):
    """One customer of a list, the columns of docs/serving.md in order; a column of a model
    that is not served is null."""

    customer_id: str
    loyalty_tier: str | None
    country: str | None
    rfm_segment: str | None
    churn_probability: float | None
    risk_band: Literal["low", "medium", "high"] | None
    value_predicted: float | None = Field(description="Expected spend over the window.")
    value_window_days: int | None
    value_at_risk: float | None = Field(description="churn_probability x value_predicted.")
    p_buy_30d: float | None
    expected_next_purchase_date: str | None = Field(
        description="The median day (YYYY-MM-DD); null beyond the timing model's horizon."
    )
    expected_next_purchase_p25_date: str | None
    expected_next_purchase_p75_date: str | None
    unlikely_within_days: int | None = Field(
        description="The horizon, when the median lies beyond it; else null."
    )
    overdue: bool | None = Field(description="Past the customer's own usual gap.")
    days_since_last_order: float | None
    spend_lifetime: float | None
    days_since_last_contact: float | None
    reasons: list[str] = Field(description="Why the customer is on the list, in words.")


class ReplenishmentCustomer(BaseModel):
    """One customer and category of the replenishment list: the cycle, then the columns
    of every list."""

    customer_id: str
    category: str
    purchases: int = Field(description="Days the customer bought the category.")
    cycle_days: float = Field(description="The customer's cycle for it (blended, days).")
    last_bought_date: str
    due_date: str
    days_until_due: int = Field(description="Negative: overdue by that many days.")
    loyalty_tier: str | None
    country: str | None
    rfm_segment: str | None
    churn_probability: float | None
    risk_band: Literal["low", "medium", "high"] | None
    value_predicted: float | None
    value_window_days: int | None
    value_at_risk: float | None
    p_buy_30d: float | None
    expected_next_purchase_date: str | None
    expected_next_purchase_p25_date: str | None
    expected_next_purchase_p75_date: str | None
    unlikely_within_days: int | None
    overdue: bool | None
    days_since_last_order: float | None
    spend_lifetime: float | None
    days_since_last_contact: float | None
    reasons: list[str]


class ListAnswer(BaseModel):
    """A page of a list."""

    list: str
    total: int = Field(description="Customers matching the filters.")
    offset: int
    limit: int
    count: int = Field(description="Customers on this page.")
    sort: str
    order: Literal["asc", "desc"]
    notes: list[str]
    customers: list[ListCustomer]


class ReplenishmentAnswer(ListAnswer):
    """A page of the replenishment list."""

    customers: list[ReplenishmentCustomer]


def answer(page: ListPage, fmt: Format) -> Any:
    if fmt == "csv":
        return Response(
            to_csv(page.rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{page.name}.csv"'},
        )
    return to_json(page)


def cycles_of(request: Request):
    """The app's category cycles (following the lake behind the requests)."""
    state = request.app.state
    current = getattr(state, "cycles_now", None)
    if current is not None:
        return current.get()
    from kizuna.serving.replenishment import ReplenishmentCache

    cache = getattr(state, "replenishment", None)
    if cache is None:
        cache = state.replenishment = ReplenishmentCache()
    return cache.get(state.settings)


def replenishment_of(request: Request):
    """The app's category cycles as ``(category, within_days) -> frame``."""
    from kizuna.serving.replenishment import lookup

    return lookup(cycles_of(request))


def categories_of(request: Request) -> list[dict]:
    from kizuna.serving.replenishment import categories

    return categories(cycles_of(request))


def page_of(
    request: Request, book: ScoreBook, name: str, f: ListFilter, within_days: int = 14
) -> ListPage:
    """``run`` with the app's category cycles; a bad sort column is a 422."""
    try:
        return run(
            book,
            name,
            f,
            within_days=within_days,
            replenishment=replenishment_of(request) if name == "replenishment" else None,
        )
    except ListError as exc:
        raise Problem(422, str(exc), field="sort") from exc


_RESPONSES = {
    200: {"content": {"text/csv": {}}, "description": "the page (JSON) or the CSV"},
    422: documented("a filter is invalid or unknown"),
    503: MODEL_MISSING,
}


def _doc(name: str, extra: str = "", model: type[BaseModel] = ListAnswer) -> dict[str, Any]:
    spec = SPECS[name]
    needs = ", ".join(spec.models) or "no model"
    sortable = ", ".join(f"`{s}`" for s in spec.sortable)
    return {
        "summary": spec.description,
        "description": f"{spec.description} Needs {needs} (503 without). Sort by {sortable}"
        f" (default `{spec.sort}`). {extra}CSV columns are in docs/serving.md.",
        "response_model": model,
        "responses": _RESPONSES,
    }


@router.get("/at-risk", **_doc("at-risk", "Never-buyers are on never-converted. "))
def at_risk_list(request: Request, book: Book, _: ListsKey, narrow: Narrow):
    return answer(
        page_of(request, book, "at-risk", narrow.filter(SPECS["at-risk"].min_churn)), narrow.format
    )


@router.get("/due-to-repurchase", **_doc("due-to-repurchase"))
def due_list(
    request: Request, book: Book, _: ListsKey, narrow: Narrow, due_within_days: DueWithin = 14
):
    page = page_of(request, book, "due-to-repurchase", narrow.filter(), due_within_days)
    return answer(page, narrow.format)


@router.get(
    "/replenishment",
    **_doc("replenishment", "`category` narrows it to one. ", ReplenishmentAnswer),
)
def replenishment_list(
    request: Request, book: Book, _: ListsKey, narrow: Narrow, due_within_days: DueWithin = 14
):
    page = page_of(request, book, "replenishment", narrow.filter(), due_within_days)
    return answer(page, narrow.format)


@router.get("/top-value", **_doc("top-value"))
def top_value_list(request: Request, book: Book, _: ListsKey, narrow: Narrow):
    return answer(page_of(request, book, "top-value", narrow.filter()), narrow.format)


@router.get("/win-back", **_doc("win-back"))
def win_back_list(request: Request, book: Book, _: ListsKey, narrow: Narrow):
    return answer(page_of(request, book, "win-back", narrow.filter()), narrow.format)


@router.get("/never-converted", **_doc("never-converted"))
def never_converted_list(request: Request, book: Book, _: ListsKey, narrow: Narrow):
    return answer(page_of(request, book, "never-converted", narrow.filter()), narrow.format)


class Category(BaseModel):
    """A product category and its typical replenishment cycle."""

    category: str
    customers: int = Field(description="Customers who bought it.")
    repeat_customers: int = Field(description="Customers who bought it on two days or more.")
    cycle_days: float | None = Field(description="Median days between a customer's buys.")


@router.get(
    "/replenishment/categories",
    summary="The product categories with a replenishment cycle",
    response_model=list[Category],
)
def replenishment_categories(request: Request, _: ListsKey) -> Any:
    return categories_of(request)


__all__ = ["RISK_BANDS", "router"]
