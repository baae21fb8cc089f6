"""API keys with scopes, stored hashed in ``$KIZUNA_HOME/serving/keys.json``.

A key is shown once, when it is created; the store keeps only its SHA-256 digest, its
name, scopes and creation time. Keys are long random tokens, so a plain digest (not a slow
password hash) is the standard choice, and lookup by digest costs one dictionary access.
A key can carry an expiry and be revoked; both take effect on a running server within the
next request, since the server re-reads the file when it changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kizuna.settings import Settings

SCOPES = ("score", "offers", "events", "lists", "admin")
PREFIX = "kz_"


class KeyError_(ValueError):
    """A key cannot be created as asked; the message says what to change."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key: everything but the key itself."""

    name: str
    scopes: tuple[str, ...]
    digest: str
    created: str
    expires: str | None = None  # ISO 8601; the key is refused from then on
    revoked: str | None = None  # ISO 8601, when `kizuna keys revoke` was run

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def refusal(self, now: datetime | None = None) -> str | None:
        """Why the key no longer admits anyone (revoked, expired), or None."""
        if self.revoked:
            return f"the API key {self.name!r} was revoked at {self.revoked}"
        if self.expires and datetime.fromisoformat(self.expires) <= (now or datetime.now(UTC)):
            return f"the API key {self.name!r} expired at {self.expires}"
        return None


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def keys_path(settings: Settings) -> Path:
    return settings.home_dir / "serving" / "keys.json"


def parse_scopes(text: str) -> tuple[str, ...]:
    """'score,lists' as a tuple of known scopes, or a clear error."""
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if not scopes or unknown:
        raise KeyError_(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SCOPES)}, e.g. --scopes score,lists"
        )
    return scopes


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """'90d', '12h' (from now) or an ISO date or time ('2027-03-31', UTC if no zone)."""
    now = now or datetime.now(UTC)
    text = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if text[-1:] in units and text[:-1].isdigit():
        return now + timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise KeyError_(
            f"cannot read the expiry {text!r}; give a duration such as 90d or 12h, or a date "
            "such as 2027-03-31"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise KeyError_(f"the expiry {text!r} is in the past; give a later date or e.g. 90d")
    return when


#: Seconds between writes of the keys' last-used times (they are kept in memory between).
USED_FLUSH_SECONDS = 10.0


class KeyStore:
    """The keys of one Kizuna home.

    The server re-reads ``keys.json`` whenever the file changes (one ``stat`` per lookup),
    so a key created or revoked with the CLI takes effect on the next request. Last-used
    times are kept in memory and written to ``keys.used.json`` at a key's first use and
    then at most every :data:`USED_FLUSH_SECONDS`; the keys' file itself is written only
    by the CLI.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = keys_path(settings)
        self.used_path = self.path.with_name("keys.used.json")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._by_digest: dict[str, ApiKey] = {}
        self._used: dict[str, str] = {}  # key name -> ISO time, not yet written
        self._written: set[str] = set()  # keys whose use this process has written out
        self._flushed = 0.0
        self._refresh()

    def _read(self) -> list[ApiKey]:
        if not self.path.exists():
            return []
        rows = json.loads(self.path.read_text())
        return [
            ApiKey(
                r["name"],
                tuple(r["scopes"]),
                r["digest"],
                r["created"],
                r.get("expires"),
                r.get("revoked"),
            )
            for r in rows
        ]

    def _refresh(self) -> None:
        """Reload the keys if the file changed since they were read."""
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        with self._lock:
            self._by_digest = {k.digest: k for k in self._read()}
            self._stamp = stamp

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(k) for k in keys], indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._refresh()

    def create(self, name: str, scopes: tuple[str, ...], expires: datetime | None = None) -> str:
        """Store a new key and return it (the only time it is visible)."""
        if not name.strip():
            raise KeyError_("give the key a name, e.g. --name crm-sync")
        keys = self._read()
        if any(k.name == name for k in keys):
            raise KeyError_(
                f"a key named {name!r} exists; choose another name (revoked keys keep theirs)"
            )
        key = PREFIX + secrets.token_urlsafe(32)
        stored = ApiKey(
            name,
            scopes,
            digest_of(key),
            datetime.now(UTC).isoformat(),
            expires.astimezone(UTC).isoformat() if expires else None,
        )
        self._write([*keys, stored])
        return key

    def revoke(self, name: str) -> ApiKey:
        """Refuse the key named ``name`` from now on (its record stays, for the audit)."""
        keys = self._read()
        match = [k for k in keys if k.name == name]
        if not match:
            names = ", ".join(k.name for k in keys) or "none yet"
            raise KeyError_(f"no key is named {name!r} (keys: {names}); see `kizuna keys list`")
        if match[0].revoked:
            raise KeyError_(f"the key {name!r} was already revoked at {match[0].revoked}")
        revoked = replace(match[0], revoked=datetime.now(UTC).isoformat())
        self._write([revoked if k.name == name else k for k in keys])
        return revoked

    def check(self, key: str) -> tuple[ApiKey | None, str | None]:
        """The live stored key matching ``key``, or None with why it is refused."""
        self._refresh()
        found = self._by_digest.get(digest_of(key))
        if found is None:
            return None, "unknown API key"
        refusal = found.refusal()
        if refusal:
            return None, refusal
        self.touch(found)
        return found, None

    def find(self, key: str) -> ApiKey | None:
        """The live stored key matching ``key``, or None."""
        return self.check(key)[0]

    def by_digest(self, digest: str) -> ApiKey | None:
        """The live key with this digest (a session cookie holds the digest), or None: a
        revoked or expired key ends its sessions too."""
        self._refresh()
        found = self._by_digest.get(digest)
        if found is None or found.refusal():
            return None
        self.touch(found)
        return found

    def touch(self, key: ApiKey) -> None:
        """Note that ``key`` was used now (written out every few seconds)."""
        with self._lock:
            first = key.name not in self._written
            self._used[key.name] = datetime.now(UTC).isoformat(timespec="seconds")
        if first or time.monotonic() - self._flushed >= USED_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write the last-used times noted since the last write."""
        with self._lock:
            self._flushed = time.monotonic()
            if not self._used:
                return
            merged = {**self.last_used(), **self._used}
            self._written.update(self._used)
            self._used = {}
            tmp = self.used_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(merged, indent=2))
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.used_path)

    def last_used(self) -> dict[str, str]:
        """Key name -> when it was last used (as last written by a server)."""
        if not self.used_path.exists():
            return {}
        try:
            return json.loads(self.used_path.read_text())
        except json.JSONDecodeError:
            return {}

    def list(self) -> list[ApiKey]:
        return self._read()
