"""Dependencies shared by the routes: the score book, the key store, scope checks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from pydantic import AfterValidator, AwareDatetime

from kizuna.serving.errors import Problem
from kizuna.serving.keys import ApiKey, KeyStore
from kizuna.serving.scoring import ScoreBook

FIRST_YEAR, LAST_YEAR = 1900, 2199  # well inside what pandas' timestamps can hold


def within_years(value: datetime) -> datetime:
    """A moment Kizuna can compute with: from 1900 to 2199."""
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(
            f"{value.isoformat()} is out of range; send a moment from {FIRST_YEAR} to {LAST_YEAR}"
        )
    return value


Moment = Annotated[AwareDatetime, AfterValidator(within_years)]
"""A moment with its time zone, within the years Kizuna computes with."""


async def book(request: Request) -> ScoreBook:
    """The current score book; 503 until the first one is built."""
    current = getattr(request.app.state, "book", None)
    if current is None:
        raise Problem(503, "the models are loading; retry in a few seconds")
    return current


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def require(scope: str) -> Callable[[Request], ApiKey]:
    """A dependency that admits a request whose API key holds ``scope`` (or admin)."""

    async def check(request: Request) -> ApiKey:
        presented = _presented_key(request)
        if not presented:
            raise Problem(
                401,
                "send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; "
                "create one with `kizuna keys create --name NAME --scopes "
                f"{scope}`",
            )
        store: KeyStore = request.app.state.keys
        key, refusal = store.check(presented)
        if key is None:
            # Never the key itself: errors and logs name keys, they do not quote them.
            raise Problem(
                401,
                f"{refusal}; ask for a new key (`kizuna keys create --name NAME --scopes {scope}`)",
            )
        if not key.allows(scope):
            raise Problem(
                403,
                f"the key {key.name!r} has scopes {', '.join(key.scopes)}; this route "
                f"needs {scope!r}",
                scope=scope,
            )
        return key

    return check


Book = Annotated[ScoreBook, Depends(book)]
ScoreKey = Annotated[ApiKey, Depends(require("score"))]
ListsKey = Annotated[ApiKey, Depends(require("lists"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
