"""The marketer page under ``/ui``: overview (KPIs), lists, a customer view and the
campaign planner, server-rendered with Jinja2 from the same functions the API answers with.

Sign in with an API key that has the ``lists`` scope (serving/websession.py); pages need
the session cookie, forms that change something need the session's CSRF token. The charts
use Chart.js, served from ``/ui/static`` (no CDN: a marketer's browser may have no
internet). Filters are plain GET forms, so a list's address is its query and bookmarkable.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kizuna.serving.customers import (
    CHANNEL_WORDS,
    CustomerHistory,
    describe,
    kizuna_decisions,
    next_best_offers,
)
from kizuna.serving.lists import SPECS, to_csv, to_records
from kizuna.serving.routes.lists import Narrow, known_parameters, page_of
from kizuna.serving.scoring import MissingModelError, ScoreBook, UnknownCustomerError
from kizuna.serving.websession import COOKIE, LOGIN_CSRF_COOKIE, Session, Sessions
from kizuna.training.horizons import HORIZONS

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(specs=SPECS, channel_words=CHANNEL_WORDS)


EMPTY = "\u2013"  # an en dash where a value is unknown


def _money(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    return f"{value:,.2f}"


def _pct(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    return f"{100 * value:.{digits}f}%"


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return EMPTY
    return f"{value:,.{digits}f}"


templates.env.filters.update(money=_money, pct=_pct, num=_num)


class SignInRequired(Exception):
    """A page asked for without a valid session: answered by a redirect to sign-in."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def sessions(request: Request) -> Sessions:
    state = request.app.state
    current = getattr(state, "sessions", None)
    if current is None:
        current = state.sessions = Sessions(state.settings, state.keys)
    return current


def signed_in(request: Request) -> Session:
    """The page's session, or a redirect to the sign-in page."""
    session = sessions(request).check(request.cookies.get(COOKIE))
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return session


UiSession = Annotated[Session, Depends(signed_in)]


def current_book(request: Request) -> ScoreBook | None:
    return getattr(request.app.state, "book", None)


def render(
    request: Request, name: str, session: Session | None, status: int = 200, **context: Any
) -> HTMLResponse:
    book = current_book(request)
    return templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "book": book,
            "missing": [] if book is None else book.champions.missing_models(),
            "now": datetime.now(UTC),
            **context,
        },
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


def _not_ready(request: Request, session: Session) -> HTMLResponse:
    error = getattr(request.app.state, "load_error", None)
    return render(
        request,
        "message.html",
        session,
        title="Not ready",
        message=error or "The models are loading; reload in a few seconds.",
        status=503,
    )


router = APIRouter(prefix="/ui", include_in_schema=False)


def install(app) -> None:
    """Mount the page, its static files and the sign-in redirect on ``app``."""
    from fastapi.responses import RedirectResponse as Redirect

    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        return Redirect(f"/ui/login?{urlencode({'next': exc.next_url})}", status_code=303)

    @app.get("/", include_in_schema=False)
    def _root() -> Response:
        return Redirect("/ui", status_code=307)

    @app.get("/dashboard", include_in_schema=False)
    def _dashboard() -> Response:
        return Redirect("/ui", status_code=307)

    app.include_router(router)


# -- sign-in ---------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a path of this page (no open redirect to another site)."""
    return target if target and target.startswith("/ui") and not target.startswith("//") else "/ui"


@router.get("/login")
def login_page(request: Request, next: str = "/ui", error: str | None = None) -> Response:
    import secrets

    token = secrets.token_urlsafe(24)
    response = render(
        request, "login.html", None, next=_safe_next(next), error=error, login_csrf=token
    )
    secure = request.url.scheme == "https"
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/ui"
    )
    return response


@router.post("/login")
def login(
    request: Request,
    api_key: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/ui",
) -> Response:
    import hmac

    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf):
        return RedirectResponse(
            f"/ui/login?{urlencode({'next': next, 'error': 'the form expired; sign in again'})}",
            status_code=303,
        )
    key, problem = sessions(request).login_key(api_key)
    if key is None:
        query = urlencode({"next": next, "error": problem})
        return RedirectResponse(f"/ui/login?{query}", status_code=303)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        sessions(request).issue(key),
        max_age=8 * 3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/ui",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(request: Request, session: UiSession, csrf: Annotated[str, Form()] = "") -> Response:
    if not Sessions.valid_csrf(session, csrf):
        return render(
            request,
            "message.html",
            session,
            title="Refused",
            message="Invalid form token.",
            status=403,
        )
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# -- overview --------------------------------------------------------------------------
@router.get("")
def overview(request: Request, session: UiSession) -> Response:
    from kizuna.serving.kpis import KpiError

    try:
        # Not waiting for the start-up warm-up: a page that says so and reloads itself.
        kpis, error = request.app.state.kpis_now.get(wait=False), None
    except KpiError as exc:
        kpis, error = None, str(exc)
    computing = kpis is None and error is None
    return render(
        request,
        "overview.html",
        session,
        kpis=kpis,
        kpi_error=error,
        computing=computing,
        page="overview",
    )


# -- lists -----------------------------------------------------------------------------
_CHOICES: dict[int, tuple[Any, dict[str, list[str]]]] = {}
PAGE_ROWS = 50  # rows a list page shows unless the marketer picks another page size


def choices(book: ScoreBook) -> dict[str, list[str]]:
    """The filters' options (segments, tiers, countries) of the book's current table,
    computed once per table (a pass over every customer)."""
    table = book.table
    kept = _CHOICES.get(id(book))
    if kept is None or kept[0] is not table:
        kept = (
            table,
            {
                "segments": sorted(table["rfm_segment"].dropna().unique()),
                "tiers": sorted(table["loyalty_tier"].dropna().unique()),
                "countries": sorted(table["country"].dropna().unique()),
            },
        )
        _CHOICES.clear()
        _CHOICES[id(book)] = kept
    return kept[1]


def _list_query(request: Request, **changes: Any) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    params += [(k, v) for k, v in changes.items() if v is not None]
    return urlencode(params)


@router.get("/lists/{name}", dependencies=[Depends(known_parameters)])
def list_page(
    request: Request, name: str, session: UiSession, narrow: Narrow, due_within_days: int = 14
) -> Response:
    if name not in SPECS:
        return render(
            request,
            "message.html",
            session,
            title="Unknown list",
            message=f"There is no list {name!r}.",
            status=404,
        )
    book = current_book(request)
    if book is None:
        return _not_ready(request, session)
    spec = SPECS[name]
    if "limit" not in request.query_params:
        narrow.rest["limit"] = PAGE_ROWS
    try:
        page = page_of(request, book, name, narrow.filter(SPECS[name].min_churn), due_within_days)
    except MissingModelError as exc:
        return render(
            request, "message.html", session, title="Not available", message=str(exc), status=503
        )
    categories = []
    if name == "replenishment":
        from kizuna.serving.routes.lists import categories_of

        categories = categories_of(request)
    return render(
        request,
        "list.html",
        session,
        page="lists",
        spec=spec,
        result=page,
        rows=to_records(page.rows),
        columns=list(page.rows.columns),
        query=request.query_params,
        link=lambda **changes: _list_query(request, **changes),
        export=f"/ui/lists/{name}/export.csv?"
        + _list_query(request, offset=0, limit=max(page.total, 1), format=None),
        due_within_days=due_within_days,
        categories=categories,
        **choices(book),
    )


@router.get("/lists/{name}/export.csv", dependencies=[Depends(known_parameters)])
def list_export(
    request: Request, name: str, session: UiSession, narrow: Narrow, due_within_days: int = 14
) -> Response:
    book = current_book(request)
    if book is None or name not in SPECS:
        return Response("not ready or unknown list", status_code=503 if book is None else 404)
    page = page_of(request, book, name, narrow.filter(SPECS[name].min_churn), due_within_days)
    return Response(
        to_csv(page.rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# -- customer view ---------------------------------------------------------------------
def history_of(request: Request) -> CustomerHistory:
    state = request.app.state
    current = getattr(state, "history", None)
    if current is None:
        current = state.history = CustomerHistory(state.settings)
    return current


@router.get("/customers")
def find_customer(request: Request, session: UiSession, customer_id: str = "") -> Response:
    if customer_id.strip():
        return RedirectResponse(f"/ui/customers/{customer_id.strip()}", status_code=303)
    return render(
        request,
        "message.html",
        session,
        title="Customer",
        message="Type a customer id in the search box.",
        status=200,
    )


@router.get("/customers/{customer_id}")
def customer_page(request: Request, customer_id: str, session: UiSession) -> Response:
    book = current_book(request)
    if book is None:
        return _not_ready(request, session)
    history = history_of(request)
    profile = history.profile(customer_id)
    try:
        record = book.score(customer_id)
    except UnknownCustomerError:
        record = None
    # The lake's customer row, with the tier and consent in force now (profile changes
    # and unsubscribes applied, as the scores and offers see them).
    effective = book.profile_of(customer_id)
    if profile is not None and effective:
        profile = {**profile, **effective}
    if profile is None and record is None:
        return render(
            request,
            "message.html",
            session,
            title="Unknown customer",
            message=f"Kizuna has never seen a customer {customer_id!r}.",
            status=404,
        )
    timeline = [
        {"at": row["happened_at"], "kind": row["kind"], "text": describe(row)}
        for row in history.timeline(customer_id).to_dict("records")
    ]
    state = request.app.state
    now = datetime.now(UTC)
    offers, offer_error = [], None
    if record is not None:
        try:
            offers = next_best_offers(
                book, customer_id, state.catalog, state.policy, state.decisions, now
            )
        except MissingModelError as exc:
            offer_error = str(exc)
    repurchase = (record or {}).get("repurchase") or {}
    curve = [{"days": h, "p": repurchase.get(f"p_buy_{h}d")} for h in HORIZONS]
    return render(
        request,
        "customer.html",
        session,
        page="customers",
        customer_id=customer_id,
        profile=profile or {},
        record=record,
        timeline=timeline,
        offers=offers,
        offer_error=offer_error,
        curve=[c for c in curve if c["p"] is not None],
        decisions=kizuna_decisions(state.decisions, customer_id),
    )


# -- planner ---------------------------------------------------------------------------
@router.get("/planner")
def planner_page(request: Request, session: UiSession) -> Response:
    book = current_book(request)
    if book is None:
        return _not_ready(request, session)
    return render(
        request,
        "planner.html",
        session,
        page="planner",
        plan=None,
        form={},
        offers=sorted(request.app.state.catalog.values(), key=lambda o: o.offer_id),
        tiers=choices(book)["tiers"],
        segments=choices(book)["segments"],
    )


def _floats(value: str | None, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


@router.post("/planner")
async def plan(request: Request, session: UiSession) -> Response:
    from kizuna.serving.campaigns import CampaignError, commit_plan, plan_campaign
    from kizuna.serving.lists import ListError, ListFilter, audience_of
    from kizuna.serving.routes.lists import replenishment_of

    form = await request.form()
    if not Sessions.valid_csrf(session, str(form.get("csrf", ""))):
        return render(
            request,
            "message.html",
            session,
            title="Refused",
            message="The form's token is missing or wrong; reload the planner.",
            status=403,
        )
    book = current_book(request)
    if book is None:
        return _not_ready(request, session)
    state = request.app.state
    values = {k: form.getlist(k) for k in form}
    one = {k: str(v[-1]) for k, v in values.items() if v}
    f = ListFilter(
        min_churn=_floats(one.get("min_churn"), 0.0),
        risk_bands=tuple(values.get("risk_band", ())),
        min_value=_floats(one.get("min_value"), 0.0),
        segments=tuple(values.get("segment", ())),
        tiers=tuple(values.get("tier", ())),
        not_contacted_days=int(one["not_contacted_days"])
        if one.get("not_contacted_days")
        else None,
        limit=1,
    )
    name = one.get("list", "at-risk")
    context: dict[str, Any] = {
        "page": "planner",
        "form": {
            **one,
            **{
                k: v
                for k, v in values.items()
                if len(v) > 1 or k in ("offer", "tier", "segment", "risk_band")
            },
        },
        "offers": sorted(state.catalog.values(), key=lambda o: o.offer_id),
        "tiers": choices(book)["tiers"],
        "segments": choices(book)["segments"],
        "plan": None,
        "error": None,
    }
    try:
        audience = audience_of(
            book, name, f, 14, replenishment_of(request) if name == "replenishment" else None
        )
        result = plan_campaign(
            audience,
            state.catalog,
            state.policy,
            state.decisions,
            channel=one.get("channel", "email"),
            budget=_floats(one.get("budget"), 0.0),
            offer_ids=list(values.get("offer", ())) or None,
            holdout_share=_floats(one.get("holdout_share"), 0.1),
            seed=int(one["seed"]) if one.get("seed", "").isdigit() else None,
            mean_order_value=book.mean_order_value,
        )
    except (CampaignError, ListError, MissingModelError) as exc:
        context["error"] = str(exc)
        return render(request, "planner.html", session, status=422, **context)
    committed = one.get("action") == "commit"
    if committed:
        commit_plan(result, state.decisions, state.settings, dict(book.champions.versions))
    context.update(
        plan=result,
        committed=committed,
        rows=result.rows.sort_values("expected_profit", ascending=False, kind="stable")
        .head(50)
        .to_dict("records"),
    )
    return render(request, "planner.html", session, **context)


@router.get("/campaigns/{campaign_id}.csv")
def campaign_csv(request: Request, campaign_id: str, session: UiSession) -> Response:
    from kizuna.serving.campaigns import campaigns_dir

    folder = campaigns_dir(request.app.state.settings)
    path = folder / f"{campaign_id}.csv"
    if not campaign_id.replace("-", "").isalnum() or not path.is_file():
        return render(
            request,
            "message.html",
            session,
            title="Unknown campaign",
            message=f"No committed campaign {campaign_id!r}.",
            status=404,
        )
    return Response(
        path.read_text(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )
