"""API keys on a running server: created, revoked and expired keys take effect without a
restart; last use is recorded; no key is ever echoed in an answer or the server's log."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from kizuna.serving.keys import KeyError_, KeyStore, parse_expiry
from tests.world import run_cli

pytestmark = pytest.mark.slow


def _status_within(url: str, key: str, status: int, seconds: float = 1.0) -> httpx.Response:
    """The first answer to GET /v1/models with ``key`` that has ``status``, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        response = httpx.get(f"{url}/v1/models", headers={"X-API-Key": key}, timeout=10)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_key_created_and_revoked_by_the_cli_takes_effect_within_a_second(server) -> None:
    created = run_cli(server.settings, "keys", "create", "--name", "hot-crm", "--scopes", "score")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    admitted = _status_within(server.url, key, 200)
    assert admitted.status_code == 200, admitted.text
    used = KeyStore(server.settings).last_used()
    assert datetime.fromisoformat(used["hot-crm"]) > datetime.now(UTC) - timedelta(minutes=1)

    revoked = run_cli(server.settings, "keys", "revoke", "hot-crm")
    assert revoked.returncode == 0, revoked.stderr
    refused = _status_within(server.url, key, 401)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert "the API key 'hot-crm' was revoked at" in refused.json()["detail"]
    assert key not in refused.text
    assert key not in server.log


def test_an_expired_key_is_refused_with_when_it_expired(server) -> None:
    store = KeyStore(server.settings)
    expires = datetime.now(UTC) + timedelta(seconds=2)
    key = store.create("short-lived", ("score",), expires=expires)
    assert _status_within(server.url, key, 200).status_code == 200
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    refused = httpx.get(f"{server.url}/v1/models", headers={"X-API-Key": key})
    assert refused.status_code == 401
    assert f"expired at {expires.isoformat()}" in refused.json()["detail"]
    assert key not in refused.text


def test_an_unknown_key_is_not_echoed(server) -> None:
    bogus = "kz_" + "x" * 43
    refused = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {bogus}"})
    assert refused.status_code == 401
    assert "unknown API key" in refused.json()["detail"]
    assert bogus not in refused.text
    assert bogus not in server.log
    for key in server.keys.values():
        assert key not in server.log


def test_a_revoked_key_ends_its_page_sessions(tmp_path) -> None:
    from kizuna.settings import Settings

    store = KeyStore(Settings(home=tmp_path / "home"))
    key = store.create("marketer", ("lists",))
    found = store.find(key)
    assert found is not None and store.by_digest(found.digest) == found
    store.revoke("marketer")
    assert store.find(key) is None and store.by_digest(found.digest) is None
    with pytest.raises(KeyError_, match="already revoked"):
        store.revoke("marketer")


def test_expiry_is_a_duration_or_a_date() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    assert parse_expiry("90d", now) == now + timedelta(days=90)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2027-03-31", now) == datetime(2027, 3, 31, tzinfo=UTC)
    with pytest.raises(KeyError_, match="in the past"):
        parse_expiry("2026-01-01", now)
    with pytest.raises(KeyError_, match="give a duration such as 90d"):
        parse_expiry("next week", now)
