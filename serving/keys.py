"""API keys with scopes, stored hashed in ``$KIZUNA_HOME/serving/keys.json``.

A key is shown once, when it is created; the store keeps only its SHA-256 digest, its
name, scopes and creation time. Keys are long random tokens, so a plain digest (not a slow
password hash) is the standard choice, and lookup by digest costs one dictionary access.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
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

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


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


class KeyStore:
    """The keys of one Kizuna home."""

    def __init__(self, settings: Settings) -> None:
        self.path = keys_path(settings)
        self._by_digest = {k.digest: k for k in self._read()}

    def _read(self) -> list[ApiKey]:
        if not self.path.exists():
            return []
        rows = json.loads(self.path.read_text())
        return [ApiKey(r["name"], tuple(r["scopes"]), r["digest"], r["created"]) for r in rows]

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(k) for k in keys], indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def create(self, name: str, scopes: tuple[str, ...]) -> str:
        """Store a new key and return it (the only time it is visible)."""
        if not name.strip():
            raise KeyError_("give the key a name, e.g. --name crm-sync")
        keys = self._read()
        if any(k.name == name for k in keys):
            raise KeyError_(f"a key named {name!r} exists; choose another name")
        key = PREFIX + secrets.token_urlsafe(32)
        stored = ApiKey(name, scopes, digest_of(key), datetime.now(UTC).isoformat())
        self._write([*keys, stored])
        self._by_digest[stored.digest] = stored
        return key

    def find(self, key: str) -> ApiKey | None:
        """The stored key matching ``key``, or None."""
        return self._by_digest.get(digest_of(key))

    def by_digest(self, digest: str) -> ApiKey | None:
        """The stored key with this digest (a session cookie holds the digest), or None."""
        return self._by_digest.get(digest)

    def list(self) -> list[ApiKey]:
        return self._read()
