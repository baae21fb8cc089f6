"""The FastAPI app a CRM integrates with: scores, lists, models, health and metrics.

The lifespan opens the Feast store, loads the champion models from the MLflow registry and
the online store's feature vectors, and scores every customer once (serving/scoring.py);
requests read the finished scores. Each customer's reasons are filled in behind the
serving. A model without a champion is left out (the routes that need it answer 503 and
say why) and picked up by the champion watcher once one is registered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd
from fastapi import FastAPI

from kizuna.features.privacy import Tombstones
from kizuna.features.realtime import ConsentFollower
from kizuna.features.store import open_store
from kizuna.serving import errors, web
from kizuna.serving.decisions import DecisionLog, Policy, load_catalog
from kizuna.serving.events import EventInbox, to_contract_frames
from kizuna.serving.keys import KeyStore
from kizuna.serving.metrics import CUSTOMERS_SCORED, LATENCY, MODEL_VERSION, watch_inbox
from kizuna.serving.routes import (
    campaigns,
    customers,
    events,
    kpis,
    lists,
    meta,
    offers,
    scores,
)
from kizuna.serving.scoring import (
    Champions,
    ScoreBook,
    ServingError,
    customers_without_vectors,
    latest_vectors,
    online_frame,
)
from kizuna.settings import Settings, get_settings

log = logging.getLogger(__name__)


def build_book(settings: Settings) -> ScoreBook:
    """Load the champions that exist and score every customer of the online store."""
    champions = Champions.load(settings)
    frame = latest_vectors(settings)
    book = ScoreBook(
        champions, frame, datetime.now(UTC), customers_without_vectors(settings, frame)
    )
    for name in champions.missing:
        MODEL_VERSION.labels(model=name).set(0)  # 0: no champion served
    for name, version in champions.versions.items():
        MODEL_VERSION.labels(model=name).set(float(version))
    CUSTOMERS_SCORED.set(len(book))
    return book


def explain_in_background(book: ScoreBook) -> threading.Thread:
    """Fill in every customer's reasons behind the serving (:meth:`ScoreBook.fill_reasons`),
    pausing between chunks so requests keep the CPU; stops when the book is closed."""
    thread = threading.Thread(
        target=book.fill_reasons, kwargs={"pause": 0.02}, name="kizuna-reasons", daemon=True
    )
    thread.start()
    return thread


def apply_events(settings: Settings, app: FastAPI, batch: list[dict]) -> None:
    """Land a batch of events, push the touched customers' features, rescore them."""
    from kizuna.features.realtime import push_updates

    # Erased customers' events: redacted in the log, or still queued from before the
    # erasure; neither may bring the customer back.
    batch = [e for e in batch if not e.get("erased")]
    if batch:
        erased = app.state.tombstones.erased_mask(pd.Series([e["customer_id"] for e in batch]))
        batch = [e for e, gone in zip(batch, erased, strict=True) if not gone]
    if not batch:
        return
    frames = to_contract_frames(batch)
    with app.state.rescoring:
        now = datetime.now(UTC)
        report = push_updates(
            settings,
            orders=frames.get("orders"),
            events=frames.get("events"),
            profile_changes=frames.get("profile_changes"),
            as_of=now,
        )
        _rescore(settings, app, report.customers, now)


def _rescore(settings: Settings, app: FastAPI, customers: list[str], now: datetime) -> None:
    """Put ``customers``' fresh online vectors into the score book."""
    book = app.state.book
    if book is not None and customers:
        book.update(online_frame(settings, customers, app.state.store), now)
        CUSTOMERS_SCORED.set(len(book))


def follow_consent(settings: Settings, app: FastAPI, stop: threading.Event) -> None:
    """Consent and profile changes ingested from files (``kizuna ingest`` of changed
    customer rows, of profile_changes or of unsubscribe events) while the server runs:
    every ``lake_poll_seconds``, refresh those customers' online features and scores, as
    an event's change is. Other file ingests wait for the next features build."""
    follower = app.state.consent
    while not stop.wait(settings.lake_poll_seconds):
        try:
            with app.state.rescoring:
                now = datetime.now(UTC)
                _rescore(settings, app, follower.catch_up(now), now)
        except Exception:  # the next poll tries the same ingests again
            log.exception("could not apply the profile changes ingested from files")


def warm_page_caches(settings: Settings, app: FastAPI) -> threading.Thread:
    """Set up what the marketer page reads besides the book (the customers' timelines, the
    KPIs, the category cycles) and build it behind the serving, so no marketer waits for
    the first. The KPIs and cycles follow the lake behind the requests (serving/refresh.py)."""
    from kizuna.features.lake import Lake
    from kizuna.serving.customers import CustomerHistory
    from kizuna.serving.kpis import KpiCache, snapshot_stamp
    from kizuna.serving.refresh import Refreshing
    from kizuna.serving.replenishment import ReplenishmentCache

    app.state.history = CustomerHistory(settings)
    app.state.kpis = KpiCache()
    app.state.replenishment = ReplenishmentCache()

    def table():
        book = app.state.book
        return None if book is None else book.table

    def lake_version() -> int:
        return Lake(settings).manifest().version

    app.state.kpis_now = Refreshing(
        lambda: app.state.kpis.get(settings, table()),
        lambda: (lake_version(), id(table()), snapshot_stamp(settings)),
        "kpis",
    )
    app.state.cycles_now = Refreshing(
        lambda: app.state.replenishment.get(settings), lake_version, "category cycles"
    )

    def first_pages() -> None:
        """Sort every list as its page first shows it (the lists keep the sorts)."""
        from kizuna.serving.lists import SPECS, ListFilter, run
        from kizuna.serving.replenishment import lookup

        book = app.state.book
        if book is None:
            return
        for name, spec in SPECS.items():
            cycles = lookup(app.state.cycles_now.get()) if name == "replenishment" else None
            try:
                run(
                    book, name, ListFilter(min_churn=spec.min_churn, limit=50), replenishment=cycles
                )
            except ServingError:  # a model the list needs is not served; its page says so
                continue

    # In the order a marketer meets them: the overview, the lists, a customer.
    steps = {
        "kpis": app.state.kpis_now.get,
        "category cycles": app.state.cycles_now.get,
        "lists": first_pages,
        "timelines": app.state.history.warm,
    }
    app.state.page_warming = list(steps)

    def warm() -> None:
        started = time.perf_counter()
        for name, step in steps.items():
            try:
                step()
            except Exception:  # the page computes it on demand and says what failed
                log.exception("could not prepare the marketer page's %s", name)
            finally:
                app.state.page_warming.remove(name)
        log.info("the marketer page is warm after %.1f s", time.perf_counter() - started)

    thread = threading.Thread(target=warm, name="kizuna-page-caches", daemon=True)
    thread.start()
    return thread


class BlankFieldsMiddleware:
    """Drop empty query fields of the page's GET forms (``min_value=``), so a filter left
    blank means "no filter" there, as it does when a field is left out of an API call."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/ui/") and scope["query_string"]:
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if v != ""]
            if len(kept) != len(pairs):
                scope = {**scope, "query_string": urlencode(kept).encode("latin-1")}
        await self.app(scope, receive, send)


class TimingMiddleware:
    """Request latency per route into Prometheus, as plain ASGI (no extra task or stream
    per request, unlike an ``http`` middleware)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            LATENCY.labels(
                route=getattr(route, "path", "unmatched"),
                method=scope["method"],
                status=str(status["code"]),
            ).observe(time.perf_counter() - started)


def champion_versions(settings: Settings) -> dict[str, str | None]:
    from kizuna.training.models import MODEL_NAMES
    from kizuna.training.registry import champion_version

    return {name: champion_version(settings, name) for name in MODEL_NAMES}


def watch_champions(settings: Settings, app: FastAPI, stop: threading.Event) -> None:
    """Poll the registry; when a champion alias moves, appears or goes, build a new book
    beside the old one and swap it in. Requests in flight keep the book they started with,
    so none fails. With no champion at all the old book (or none) stays."""
    while not stop.wait(settings.model_poll_seconds):
        book = app.state.book
        try:
            current = champion_versions(settings)
            if book is not None and current == book.champions.registry:
                continue
            if all(version is None for version in current.values()):
                continue
            log.info("new champions %s; rebuilding the score book", current)
            app.state.book = build_book(settings)
            app.state.load_error = None
            explain_in_background(app.state.book)
            if book is not None:
                book.close()
        except Exception:  # keep serving the old book; try again at the next poll
            log.exception("could not load the new champions; still serving the old ones")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; ``settings`` default to the environment's (KIZUNA_*)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        app.state.keys = KeyStore(settings)
        app.state.tombstones = Tombstones(settings)
        app.state.policy = Policy.from_settings(settings)
        app.state.decisions = DecisionLog(settings.home_dir / "serving")
        app.state.rng = np.random.default_rng()
        app.state.catalog = {}
        app.state.book = None
        app.state.store = None
        app.state.load_error = None
        app.state.rescoring = threading.Lock()  # the event worker's and the follower's
        app.state.consent = None
        try:
            # The Feast store the event worker reads rescored customers' vectors from.
            app.state.store = open_store(settings)
            app.state.catalog = load_catalog(settings)
            # Consent changes ingested from files since the snapshots, before any score.
            app.state.consent = ConsentFollower.load(settings)
            app.state.consent.catch_up()
            app.state.book = build_book(settings)
            explain_in_background(app.state.book)
        except Exception as exc:  # readyz reports it; healthz stays up
            log.exception("could not load the models and features")
            app.state.load_error = f"{type(exc).__name__}: {exc}"
        warm_page_caches(settings, app)
        app.state.inbox = EventInbox(
            settings.home_dir / "serving", lambda batch: apply_events(settings, app, batch)
        )
        watch_inbox(app.state.inbox)
        stop = threading.Event()
        watcher = threading.Thread(
            target=watch_champions, args=(settings, app, stop), name="kizuna-champions", daemon=True
        )
        watcher.start()
        if app.state.consent is None:  # the load failed before it
            app.state.consent = ConsentFollower.load(settings)
        threading.Thread(
            target=follow_consent, args=(settings, app, stop), name="kizuna-consent", daemon=True
        ).start()
        try:
            yield
        finally:
            stop.set()
            app.state.inbox.close()
            app.state.keys.flush()
            if app.state.book is not None:
                app.state.book.close()

    app = FastAPI(
        title="Kizuna",
        version="1",
        summary="Churn risk, repurchase timing, customer value and next best offer.",
        description=(
            "Authenticate with an API key (`kizuna keys create --name NAME --scopes "
            "score,lists`) sent as `Authorization: Bearer <key>` or `X-API-Key`. Errors "
            "are `application/problem+json` and name the field that was wrong."
        ),
        lifespan=lifespan,
    )
    errors.install(app)

    app.add_middleware(BlankFieldsMiddleware)
    app.add_middleware(TimingMiddleware)

    routers = (scores, offers, campaigns, events, lists, kpis, customers, meta)
    for module in routers:
        app.include_router(module.router)
    web.install(app)
    return app
