"""The marketer page in a real browser: Debian's chromium driven by Playwright against the
real server of tests/serving/conftest.py (four trained champions on the simulated retailer).

Each test saves a screenshot of what it saw under its tmp folder.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:  # `make test` and .ci/run install it; a laptop may not have it
    pytest.skip(
        "Debian's chromium is not installed (`make test` installs it: apt-get install -y chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    """Playwright's own browser download does not work here: use the system chromium."""
    return {"executable_path": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu"]}


@pytest.fixture
def watched(page):
    """The page, with every console error and uncaught exception collected."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    return page


def sign_in(page, server, scope: str = "lists", next_path: str = "/ui") -> None:
    page.goto(f"{server.url}{next_path}")
    assert "/ui/login" in page.url
    page.fill("#api_key", server.keys[scope])
    page.click("button[type=submit]")


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    return path


def test_sign_in_refuses_a_wrong_key_and_a_key_without_lists(watched, server, tmp_path) -> None:
    page = watched
    page.goto(f"{server.url}/ui")
    assert "/ui/login" in page.url
    page.fill("#api_key", "kz_not-a-key")
    page.click("button[type=submit]")
    assert "unknown API key" in page.inner_text("[role=alert]")
    page.fill("#api_key", server.keys["score"])
    page.click("button[type=submit]")
    assert "needs 'lists'" in page.inner_text("[role=alert]")
    shot(page, tmp_path, "login-refused")
    assert not [c for c in page.context.cookies() if c["name"] == "kizuna_session"]
    page.fill("#api_key", server.keys["lists"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/ui")
    cookie = next(c for c in page.context.cookies() if c["name"] == "kizuna_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.keys["lists"] not in cookie["value"]
    page.click("text=Sign out")
    page.wait_for_url("**/ui/login")
    page.goto(f"{server.url}/ui/lists/at-risk")
    assert "/ui/login" in page.url  # signed out: the cookie is gone
    assert page.errors == []


@pytest.mark.parametrize(
    "path",
    [
        "/ui",
        "/ui/lists/at-risk",
        "/ui/lists/due-to-repurchase",
        "/ui/lists/replenishment",
        "/ui/lists/top-value",
        "/ui/lists/win-back",
        "/ui/lists/never-converted",
        "/ui/planner",
    ],
)
def test_every_page_loads_without_console_errors(watched, server, tmp_path, path) -> None:
    page = watched
    server.wait_page_warm()  # the overview's KPIs are computed behind the start-up
    sign_in(page, server, next_path=path)
    page.wait_for_url(f"{server.url}{path}")
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").first.inner_text().strip()
    if path == "/ui":  # the charts drew (Chart.js is served by Kizuna, not a CDN)
        assert page.locator("canvas").count() >= 3
        assert page.evaluate("typeof Chart") == "function"
    shot(page, tmp_path, path.strip("/").replace("/", "-"))
    assert page.errors == []


def _rows(page) -> list[dict[str, str]]:
    headers = [h.inner_text().strip(" ▲▼") for h in page.locator("#list thead th").all()]
    out = []
    for row in page.locator("#list tbody tr").all():
        cells = [c.inner_text().strip() for c in row.locator("td").all()]
        if len(cells) == len(headers):
            out.append(dict(zip(headers, cells, strict=True)))
    return out


def test_a_filter_changes_the_rows_and_the_csv_equals_the_api(watched, server, tmp_path) -> None:
    page = watched
    sign_in(page, server, next_path="/ui/lists/top-value")
    page.wait_for_url("**/ui/lists/top-value")
    everyone = int(page.inner_text("#total").replace(",", ""))
    tiers = {r["Tier"] for r in _rows(page)}
    assert len(tiers) > 1
    page.select_option("select[name=tier]", ["gold"])
    page.click("text=Apply")
    page.wait_for_url("**tier=gold**")
    gold = int(page.inner_text("#total").replace(",", ""))
    assert 0 < gold < everyone
    assert {r["Tier"] for r in _rows(page)} == {"gold"}
    assert "min_value=" not in page.url  # blank fields are not sent
    shot(page, tmp_path, "top-value-gold")
    with page.expect_download() as download:
        page.click("text=Export CSV")
    downloaded = Path(download.value.path()).read_text()
    with server.client("lists") as c:
        api = c.get(
            "/v1/lists/top-value",
            params={"tier": "gold", "offset": 0, "limit": gold, "format": "csv"},
        ).text
    assert downloaded == api
    assert len(list(csv.DictReader(io.StringIO(api)))) == gold
    assert page.errors == []


def test_sorting_and_paging(watched, server, tmp_path) -> None:
    page = watched
    sign_in(page, server, next_path="/ui/lists/top-value?limit=25")
    page.wait_for_url("**/ui/lists/top-value?limit=25")
    page.click("th >> text=Spent")
    page.wait_for_url("**sort=spend_lifetime**")
    first = _rows(page)
    spent = [float(r["Spent"].replace(",", "")) for r in first]
    assert spent == sorted(spent, reverse=True) and len(first) == 25
    page.click("text=Next →")
    page.wait_for_url("**offset=25**")
    second = _rows(page)
    assert float(second[0]["Spent"].replace(",", "")) <= spent[-1]
    assert not {r["Customer"] for r in first} & {r["Customer"] for r in second}
    assert page.errors == []


def test_the_customer_page_shows_a_pushed_event(watched, server, tmp_path) -> None:
    page = watched
    with server.client("lists") as c:
        customer = c.get("/v1/lists/top-value", params={"limit": 1}).json()["customers"][0]
    cid = customer["customer_id"]
    sign_in(page, server, next_path=f"/ui/customers/{cid}")
    page.wait_for_url(f"**/ui/customers/{cid}")
    assert page.locator("#timeline li").count() > 3
    assert page.locator("#repurchase-curve").count() == 1
    assert "expected profit" in page.inner_text("#offer-h + details") or "no offer" in (
        page.inner_text("#offer-h + details")
    )
    event = {
        "event_id": f"ui-nps-{cid}",
        "customer_id": cid,
        "type": "nps_response",
        "value": 3,
        "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
    }
    with server.client("events") as c:
        assert c.post("/v1/events", json={"events": [event]}).status_code == 202
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        page.reload()
        if "NPS answer 3/10 (detractor)" in page.inner_text("#timeline"):
            break
        time.sleep(1)
    assert "NPS answer 3/10 (detractor)" in page.inner_text("#timeline")
    shot(page, tmp_path, "customer")
    assert page.errors == []


def test_forms_without_the_csrf_token_are_refused(server) -> None:
    import httpx

    with httpx.Client(base_url=server.url, follow_redirects=False) as c:
        login = c.get("/ui/login")
        token = login.text.split('name="csrf" value="')[1].split('"')[0]
        # A cross-site sign-in post has no token cookie pair: refused.
        forged = httpx.post(
            f"{server.url}/ui/login", data={"api_key": server.keys["lists"], "csrf": "x"}
        )
        assert forged.status_code == 303 and "expired" in forged.headers["location"]
        ok = c.post("/ui/login", data={"api_key": server.keys["lists"], "csrf": token})
        assert ok.status_code == 303 and "kizuna_session" in ok.headers["set-cookie"]
        refused = c.post("/ui/logout", data={"csrf": "not-the-token"})
        assert refused.status_code == 403
        assert c.get("/ui").status_code == 200  # still signed in
