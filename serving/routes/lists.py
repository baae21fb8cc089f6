"""GET /v1/lists/at-risk and /v1/lists/due-to-repurchase: the lists marketers pull."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from kizuna.serving.deps import Book, ListsKey
from kizuna.serving.errors import MODEL_MISSING
from kizuna.serving.lists import ListFilter, at_risk, due_to_repurchase, to_csv, to_records

router = APIRouter(prefix="/v1/lists", tags=["lists"])

Format = Literal["json", "csv"]


def _answer(rows, fmt: Format, name: str):
    if fmt == "csv":
        return Response(
            to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return {"count": len(rows), "customers": to_records(rows)}


class Narrowing:
    """The filters both lists share (the churn floor differs, so each route has its own)."""

    def __init__(
        self,
        min_value: float = Query(
            0.0, ge=0, description="Lowest predicted value (over `value_window_days`)."
        ),
        segment: list[str] | None = Query(None, description="RFM segment(s) to keep."),
        channel: Literal["email", "sms", "push"] | None = Query(
            None, description="Keep only customers who consent to this channel."
        ),
        not_contacted_days: int | None = Query(
            None, ge=0, description="Keep customers sent no offer in this many days."
        ),
        limit: int = Query(100, ge=1, le=100_000, description="Most rows to return."),
        format: Format = Query("json", description="json or csv."),
    ) -> None:
        self.min_value, self.segments = min_value, tuple(segment or ())
        self.channel, self.not_contacted_days = channel, not_contacted_days
        self.limit, self.format = limit, format

    def filter(self, min_churn: float) -> ListFilter:
        return ListFilter(
            min_churn,
            self.min_value,
            self.segments,
            self.channel,
            self.not_contacted_days,
            self.limit,
        )


Narrow = Annotated[Narrowing, Depends()]


@router.get(
    "/at-risk",
    summary="Customers at risk, most value at risk first",
    description="Customers by value at risk (churn probability times predicted value over "
    "the value model's window, `value_window_days`), with the reasons for each. CSV columns "
    "are documented in docs/serving.md. Needs the churn and value models (503 without).",
    responses={503: MODEL_MISSING},
)
def at_risk_list(
    book: Book,
    _: ListsKey,
    narrow: Narrow,
    min_churn: float = Query(0.5, ge=0, le=1, description="Lowest churn probability."),
):
    return _answer(at_risk(book, narrow.filter(min_churn)), narrow.format, "at-risk")


@router.get(
    "/due-to-repurchase",
    summary="Customers due to buy again, soonest first",
    description="Customers whose expected next purchase falls within `due_within_days` "
    "(or is already past), soonest first. Needs the repurchase model, and the churn or "
    "value model when `min_churn` or `min_value` is above 0 (503 without).",
    responses={503: MODEL_MISSING},
)
def due_list(
    book: Book,
    _: ListsKey,
    narrow: Narrow,
    due_within_days: int = Query(14, ge=0, description="Expected to buy within N days."),
    min_churn: float = Query(0.0, ge=0, le=1, description="Lowest churn probability."),
):
    rows = due_to_repurchase(book, narrow.filter(min_churn), due_within_days)
    return _answer(rows, narrow.format, "due-to-repurchase")
