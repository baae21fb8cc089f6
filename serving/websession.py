"""Sign-in for the marketer page: an API key with the ``lists`` scope becomes a signed,
HttpOnly, SameSite=Strict session cookie; every form that changes something carries a
CSRF token tied to that session.

The cookie holds the key's digest (never the key) and an expiry, signed with HMAC-SHA256
under a secret kept in ``$KIZUNA_HOME/serving/session.key`` (created on first use, mode
600), so any worker of the same home can check it without shared memory. Each request
checks the key still exists and still has the scope, so deleting a key signs its sessions
out. The CSRF token is an HMAC of the session under the same secret (a synchronizer token
that needs no server-side store); the sign-in form, which has no session yet, uses a
double-submit cookie instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from kizuna.serving.keys import ApiKey, KeyStore
from kizuna.settings import Settings

COOKIE = "kizuna_session"
LOGIN_CSRF_COOKIE = "kizuna_login_csrf"
SCOPE = "lists"
LIFETIME_SECONDS = 8 * 3600


def _secret(settings: Settings) -> bytes:
    path: Path = settings.home_dir / "serving" / "session.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(secrets.token_bytes(32))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins; the others read its secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A signed-in marketer: the key they signed in with and the session's CSRF token."""

    key: ApiKey
    csrf: str
    expires: int


class Sessions:
    """Issue and check session cookies and CSRF tokens for one Kizuna home."""

    def __init__(self, settings: Settings, keys: KeyStore) -> None:
        self._secret = _secret(settings)
        self._keys = keys

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def issue(self, key: ApiKey, now: float | None = None) -> str:
        """The cookie value of a new session for ``key``."""
        expires = int((now or time.time()) + LIFETIME_SECONDS)
        payload = _b64(
            json.dumps({"d": key.digest, "e": expires, "n": secrets.token_hex(8)}).encode()
        )
        return f"{payload}.{self._sign(payload)}"

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is missing, forged, expired, or
        its key is gone or lost the scope."""
        if not cookie or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
        except ValueError:
            return None
        if int(data.get("e", 0)) < (now or time.time()):
            return None
        key = self._keys.by_digest(str(data.get("d", "")))
        if key is None or not key.allows(SCOPE):
            return None
        return Session(key, self._sign(f"csrf:{cookie}"), int(data["e"]))

    @staticmethod
    def valid_csrf(session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(session.csrf, token)

    def login_key(self, presented: str) -> tuple[ApiKey | None, str | None]:
        """The key a sign-in form presents, or None with what was wrong."""
        key, refusal = self._keys.check(presented.strip())
        if key is None:
            return (
                None,
                f"{refusal}: ask for a new one (`kizuna keys create --name NAME --scopes lists`)",
            )
        if not key.allows(SCOPE):
            return None, (
                f"the key {key.name!r} has scopes {', '.join(key.scopes)}; the page needs "
                "'lists' (`kizuna keys create --name NAME --scopes lists`)"
            )
        return key, None
