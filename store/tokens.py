"""Who may use the HTTP API: named tokens with a role, kept in the store (CONTRACT section 9).

They live in the store's own database (``tollbook_tokens``), so a team on PostgreSQL shares
them. A token is ``tb_<key>_<secret>``: ``key`` finds its row, and only the SHA-256 of the whole
token is kept (the secret is 256 random bits: a fast hash of it cannot be searched), compared in
constant time. Neither a token nor its hash is ever printed after ``create``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from tollbook.store.eventstore import EventStore, to_micros_now

ROLES = ("reader", "editor")
NAME_LIMIT = 200
# last_used_at is written at most this often per token: a read request writes nothing else.
TOUCH_EVERY = 60_000_000  # microseconds

_TABLE = """
    CREATE TABLE IF NOT EXISTS tollbook_tokens (
        name TEXT PRIMARY KEY, role TEXT NOT NULL, key TEXT NOT NULL UNIQUE, digest TEXT NOT NULL,
        created_at BIGINT NOT NULL, last_used_at BIGINT, revoked_at BIGINT)"""
_DUMMY = hashlib.sha256(b"no such token").hexdigest()


class TokenError(ValueError):
    """A token command that cannot be done (a name taken, unknown, or not allowed)."""


@dataclass(frozen=True)
class Identity:
    """Who a request is: the token's name (its events' ``recorded_by``) and role."""

    name: str
    role: str
    key: str
    last_used_at: int | None

    @property
    def may_write(self) -> bool:
        return self.role == "editor"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not name or name != name.strip():
        raise TokenError("NAME: must be non-empty, without leading or trailing spaces")
    if len(name) > NAME_LIMIT:
        raise TokenError(f"NAME: longer than {NAME_LIMIT} characters")
    if any(not character.isprintable() for character in name):
        raise TokenError("NAME: must not hold control characters")
    return name


class Tokens:
    """The store's tokens; every method is one short transaction."""

    def __init__(self, store: EventStore):
        self.store = store
        with store.transaction() as cursor:
            store.lock(cursor, "tollbook-tokens")  # PostgreSQL: two first uses at once do not race
            cursor.execute(_TABLE)

    def create(self, name: str, role: str) -> str:
        """A new token for ``name`` with ``role``; returns the token itself (shown once)."""
        check_name(name)
        if role not in ROLES:
            raise TokenError(f"--role: must be one of {', '.join(ROLES)}")
        key = secrets.token_hex(6)
        token = f"tb_{key}_{secrets.token_urlsafe(32)}"
        with self.store.transaction() as cursor:
            cursor.execute("SELECT 1 FROM tollbook_tokens WHERE name = ?", (name,))
            if cursor.fetchone() is not None:
                raise TokenError(f"a token named {name!r} exists already (revoke it, or choose another name)")
            cursor.execute("INSERT INTO tollbook_tokens (name, role, key, digest, created_at) VALUES (?, ?, ?, ?, ?)",
                           (name, role, key, _digest(token), to_micros_now()))
        return token

    def list(self) -> list[dict[str, Any]]:
        with self.store.transaction(write=False) as cursor:
            cursor.execute("SELECT name, role, created_at, last_used_at, revoked_at FROM tollbook_tokens"
                           " ORDER BY created_at, name")
            rows = cursor.fetchall()
        return [{"name": name, "role": role, "created_at": created, "last_used_at": used, "revoked_at": revoked}
                for name, role, created, used, revoked in rows]

    def revoke(self, name: str) -> None:
        with self.store.transaction() as cursor:
            cursor.execute("SELECT revoked_at FROM tollbook_tokens WHERE name = ?", (name,))
            row = cursor.fetchone()
            if row is None:
                raise TokenError(f"no token is named {name!r}")
            if row[0] is None:
                cursor.execute("UPDATE tollbook_tokens SET revoked_at = ? WHERE name = ?", (to_micros_now(), name))

    def identify(self, token: str) -> Identity | None:
        """The identity a presented token stands for, or None (unknown, malformed or revoked)."""
        parts = token.split("_", 2)
        key = parts[1] if len(parts) == 3 and parts[0] == "tb" and len(parts[1]) == 12 else None
        row = None
        if key is not None:
            with self.store.transaction(write=False) as cursor:
                cursor.execute("SELECT name, role, digest, last_used_at, revoked_at FROM tollbook_tokens"
                               " WHERE key = ?", (key,))
                row = cursor.fetchone()
        # The digest is compared even when no row was found: the answer takes as long either way.
        same = hmac.compare_digest(row[2] if row else _DUMMY, _digest(token))
        if row is None or not same or row[4] is not None:
            return None
        return Identity(row[0], row[1], key, row[3])

    def by_key(self, key: str) -> Identity | None:
        """The identity of a token still valid, by its key (a signed-in browser's session)."""
        with self.store.transaction(write=False) as cursor:
            cursor.execute("SELECT name, role, last_used_at FROM tollbook_tokens WHERE key = ? AND revoked_at IS NULL",
                           (key,))
            row = cursor.fetchone()
        return Identity(row[0], row[1], key, row[2]) if row else None

    def touch(self, identity: Identity) -> None:
        """Notes that the token was used now (at most every :data:`TOUCH_EVERY`)."""
        now = to_micros_now()
        if identity.last_used_at is not None and now - identity.last_used_at < TOUCH_EVERY:
            return
        with self.store.transaction() as cursor:
            cursor.execute("UPDATE tollbook_tokens SET last_used_at = ? WHERE key = ?", (now, identity.key))
