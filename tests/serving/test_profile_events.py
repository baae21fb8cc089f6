"""A profile_change event reaches scores, lists and offers within seconds, and is history."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

from kizuna.features.lake import Lake
from tests.serving.conftest import own_copy
from tests.world import run_cli, write_csvs

pytestmark = pytest.mark.slow


def _post_change(server, event_id: str, customer: str, changes: dict) -> None:
    body = {
        "events": [
            {
                "event_id": event_id,
                "customer_id": customer,
                "type": "profile_change",
                "occurred_at": (datetime.now(UTC) - timedelta(seconds=5)).isoformat(),
                "changes": changes,
            }
        ]
    }
    with server.client("events") as c:
        response = c.post("/v1/events", json=body)
    assert response.status_code == 202, response.text


def _until(check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "the change never took effect"
        time.sleep(0.3)
    return result


def test_an_opt_out_event_stops_scores_lists_and_offers(scratch_server) -> None:
    server = scratch_server
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 20}).json()
    # Away from the head of the list, which the erasure tests use.
    profiling, emailing = rows["customers"][-1]["customer_id"], rows["customers"][-2]["customer_id"]

    _post_change(server, f"optout-{profiling}", profiling, {"consent_profiling": False})
    _post_change(
        server, f"noemail-{emailing}", emailing, {"consent_email": False, "loyalty_tier": "gold"}
    )

    def score(customer):
        with server.client("score") as c:
            return c.post("/v1/scores", json={"customer_ids": [customer]}).json()["scores"][0]

    started = time.monotonic()

    def opted_out():
        record = score(profiling)
        return record if record["scored"] is False else None

    record = _until(opted_out)
    assert "opted out of profiling" in record["reason"] and "churn" not in record
    # Both batches applied (the inbox has nothing pending), then everything reflects them.
    assert _until(lambda: httpx.get(f"{server.url}/readyz").json()["events"]["pending"] == 0)
    assert score(emailing)["loyalty_tier"] == "gold"
    print(f"the changes took effect in {time.monotonic() - started:.1f} s")

    with server.client("lists") as c:
        page = c.get("/v1/lists/at-risk", params={"limit": 1000}).json()
        listed = {r["customer_id"] for r in page["customers"]}
        assert profiling not in listed
        by_email = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 1000}).json()
        assert emailing not in {r["customer_id"] for r in by_email["customers"]}
    with server.client("offers") as c:
        decision = c.post(
            "/v1/offers/next-best", json={"customer_id": emailing, "channel": "email"}
        ).json()
    assert decision["action"] == "no_offer" and "no consent for email" in decision["reason"]

    # Kept as history, dated when it happened.
    changes = Lake(server.settings).read("profile_changes").set_index("change_id")
    assert not changes.loc[f"optout-{profiling}", "consent_profiling"]
    assert changes.loc[f"noemail-{emailing}", "loyalty_tier"] == "gold"
    assert changes.loc[f"noemail-{emailing}", "source"] == "api"


def _consent_pill(page: str) -> str:
    """The e-mail consent pill of a customer page: ✓ or ✗."""
    block = page.split('id="consent"')[1]
    return block.split("e-mail", 1)[1].strip()[0]


def sign_in(url: str, key: str) -> httpx.Client:
    """A page session, signed in through the form as a browser would."""
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/ui/login").text
    token = form.split('name="csrf" value="')[1].split('"')[0]
    client.post("/ui/login", data={"api_key": key, "csrf": token})
    assert "kizuna_session" in client.cookies
    return client


def test_a_renewed_consent_undoes_an_earlier_unsubscribe(scratch_server) -> None:
    server = scratch_server
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 30}).json()
    customer = rows["customers"][-3]["customer_id"]
    page = sign_in(server.url, server.keys["lists"])

    def offer():
        with server.client("offers") as c:
            return c.post(
                "/v1/offers/next-best", json={"customer_id": customer, "channel": "email"}
            ).json()

    def settled():
        return httpx.get(f"{server.url}/readyz").json()["events"]["pending"] == 0

    unsubscribe = {
        "event_id": f"unsub-{customer}",
        "customer_id": customer,
        "type": "unsubscribe",
        "channel": "email",
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=30)).isoformat(),
    }
    with server.client("events") as c:
        assert c.post("/v1/events", json={"events": [unsubscribe]}).status_code == 202
    blocked = _until(lambda: "no consent for email" in offer().get("reason", ""))
    assert blocked and _until(settled)
    assert _consent_pill(page.get(f"/ui/customers/{customer}").text) == "✗"

    # The customer subscribes again, after the unsubscribe: the latest word wins.
    _post_change(server, f"renew-{customer}", customer, {"consent_email": True})
    _until(lambda: "no consent for email" not in (offer().get("reason") or ""))
    assert _until(settled)
    with server.client("lists") as c:
        listed = [
            {r["customer_id"] for r in c.get("/v1/lists/top-value", params=p).json()["customers"]}
            for p in ({"limit": 100_000}, {"limit": 100_000, "channel": "email"})
        ]
    # Rescored as of now, the customer may have left the at-risk list: the value list
    # holds everyone with a score, and the e-mail filter keeps them again.
    assert customer in listed[0] and customer in listed[1]
    assert _consent_pill(page.get(f"/ui/customers/{customer}").text) == "✓"
    page.close()


def _consent_files(folder, opting_out: str, unsubscribing: str):
    """A file of profile changes (a profiling opt-out) and one of an e-mail unsubscribe."""
    at = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return write_csvs(
        folder,
        profile_changes=f"change_id,customer_id,changed_at,consent_profiling\n"
        f"file-optout-{opting_out},{opting_out},{at},false\n",
        events=f"event_id,customer_id,occurred_at,type,channel\n"
        f"file-unsub-{unsubscribing},{unsubscribing},{at},unsubscribe,email\n",
    )


def test_consent_ingested_from_a_file_reaches_the_running_server(scratch_server, tmp_path) -> None:
    server = scratch_server
    with server.client("lists") as c:
        rows = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 30}).json()
    opting_out, unsubscribing = (rows["customers"][i]["customer_id"] for i in (-4, -5))
    folder = _consent_files(tmp_path / "in", opting_out, unsubscribing)
    ingested = run_cli(server.settings, "ingest", str(folder))
    assert ingested.returncode == 0, ingested.stderr
    started = time.monotonic()

    def score(customer):
        with server.client("score") as c:
            return c.post("/v1/scores", json={"customer_ids": [customer]}).json()["scores"][0]

    _until(lambda: score(opting_out)["scored"] is False, seconds=30)
    with server.client("offers") as c:
        decision = c.post(
            "/v1/offers/next-best", json={"customer_id": unsubscribing, "channel": "email"}
        ).json()
    assert "no consent for email" in decision["reason"]
    print(f"the file's changes took effect in {time.monotonic() - started:.1f} s")
    with server.client("lists") as c:
        by_email = c.get("/v1/lists/at-risk", params={"channel": "email", "limit": 1000}).json()
    assert not {opting_out, unsubscribing} & {r["customer_id"] for r in by_email["customers"]}


def test_the_batch_file_honours_consent_ingested_since_the_snapshots(
    trained_home, tmp_path
) -> None:
    """No server: `kizuna score` catches the online features up itself."""
    settings = own_copy(trained_home, tmp_path / "copy")
    before = tmp_path / "before.parquet"
    assert run_cli(settings, "score", "--out", str(before)).returncode == 0
    scored = pd.read_parquet(before).query("scored and consent_email")["customer_id"].tolist()
    opting_out, unsubscribing = scored[7], scored[8]
    folder = _consent_files(tmp_path / "in", opting_out, unsubscribing)
    assert run_cli(settings, "ingest", str(folder)).returncode == 0
    after = tmp_path / "after.parquet"
    result = run_cli(settings, "score", "--out", str(after))
    assert result.returncode == 0, result.stderr
    assert "changes of 2 customers caught up" in result.stderr
    rows = pd.read_parquet(after).set_index("customer_id")
    assert not rows.loc[opting_out, "scored"] and pd.isna(rows.loc[opting_out, "churn_probability"])
    assert not rows.loc[unsubscribing, "consent_email"] and rows.loc[unsubscribing, "scored"]
    # Caught up once: the next run has nothing more to do.
    again = run_cli(settings, "score", "--out", str(after))
    assert "caught up" not in again.stderr


def test_a_profile_change_without_changes_is_a_422_naming_it(server) -> None:
    body = {
        "events": [
            {
                "event_id": "empty-change",
                "customer_id": "C000001",
                "type": "profile_change",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
        ]
    }
    with server.client("events") as c:
        response = c.post("/v1/events", json=body)
        assert response.status_code == 422
        assert "a profile_change needs changes" in response.json()["detail"]
        body["events"][0]["changes"] = {"consent_fax": True}
        assert c.post("/v1/events", json=body).status_code == 422
