"""The control API's bearer tokens, in the audit database: only their hashes are stored.

A token reads ``shk_<id>_<secret>``: the id finds the row (so a check costs one indexed read,
not a scan), the secret is 32 random bytes whose SHA-256 is all that is kept. A presented
token is compared with the stored hash in constant time (``hmac.compare_digest``); a revoked
token stays in the table, so who had which role stays answerable. The secret is shown once,
when the token is made.

Roles (``healing``-free plain strings; the API decides what each may do):
viewer (reads), operator (circuits, recovery, alerts, models), auditor (the audit trail),
admin (tokens, and everything else).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from healing.clock import Clock, SystemClock
from healing.config import check_count, check_non_negative
from healing.errors import ConfigError

from .audit_sql import AuditStore, AuditStoreError, api_tokens

__all__ = ["ROLES", "ApiToken", "RecentTokens", "TokenStore", "api_tokens"]

ROLES = ("viewer", "operator", "auditor", "admin")
_PREFIX = "shk"
_TOKEN = re.compile(rf"{_PREFIX}_([0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,99}")



@dataclass(frozen=True, slots=True)
class ApiToken:
    """A token as the API sees it: never its secret."""

    id: str
    name: str
    role: str
    created_at: float
    created_by: str
    revoked_at: float | None = None

    @property
    def who(self) -> str:
        """How the audit trail names the holder."""
        return f"token:{self.id} ({self.name}, {self.role})"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenStore:
    def __init__(self, store: AuditStore, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()

    def create(self, role: str, name: str, created_by: str) -> tuple[str, ApiToken]:
        """A new token: its one-time secret text and its record.

        Raises:
            ConfigError: an unknown role or an unusable name.
        """
        if role not in ROLES:
            raise ConfigError("role", role, f"must be one of {list(ROLES)}")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError("name", name, "must be 1-100 letters, digits, spaces or ._@:-, "
                                            "starting with a letter or digit")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = ApiToken(token_id, name, role, self.clock.wall(), created_by)
        self._write(insert(api_tokens).values(
            id=token_id, name=name, role=role, hash=_digest(secret), created_at=row.created_at,
            created_by=created_by))
        return f"{_PREFIX}_{token_id}_{secret}", row

    def authenticate(self, presented: str) -> ApiToken | None:
        """The live token ``presented`` is, or None (malformed, unknown, wrong or revoked).
        All four look alike to the caller, and take the same path to the comparison."""
        m = _TOKEN.fullmatch(presented or "")
        token_id, secret = (m.group(1), m.group(2)) if m else ("", "")
        row = self._row(token_id) if m else None
        stored = row.hash if row is not None else "0" * 64
        ok = hmac.compare_digest(stored, _digest(secret))
        if row is None or not ok or row.revoked_at is not None:
            return None
        return _token(row)

    def revoke(self, token_id: str) -> ApiToken:
        """Revoke a token (idempotent). Raises ConfigError if there is no such token."""
        row = self._row(token_id)
        if row is None:
            raise ConfigError("token", token_id, "is not a known token id")
        if row.revoked_at is None:
            self._write(update(api_tokens).where(api_tokens.c.id == token_id)
                        .values(revoked_at=self.clock.wall()))
            row = self._row(token_id)
        return _token(row)

    def list(self) -> list[ApiToken]:
        try:
            with self.store.engine.connect() as conn:
                rows = conn.execute(select(api_tokens).order_by(api_tokens.c.created_at))
                return [_token(r) for r in rows]
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the API tokens: {type(exc).__name__}") from exc

    def count(self, role: str | None = None) -> int:
        return sum(1 for t in self.list() if t.revoked_at is None and role in (None, t.role))

    def _row(self, token_id: str):  # type: ignore[no-untyped-def]
        try:
            with self.store.engine.connect() as conn:
                return conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)
                                    ).first()
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the API tokens: {type(exc).__name__}") from exc

    def _write(self, statement) -> None:  # type: ignore[no-untyped-def]
        try:
            with self.store.engine.begin() as conn:
                conn.execute(statement)
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot write the API tokens: {type(exc).__name__}") from exc


def _token(row) -> ApiToken:  # type: ignore[no-untyped-def]
    return ApiToken(row.id, row.name, row.role, row.created_at, row.created_by, row.revoked_at)


class RecentTokens:
    """The tokens this process accepted in the last ``ttl_s`` seconds, so that a client that
    polls (the dashboard, a Prometheus scraper) is checked without a database read, and the
    API can check it on its event loop instead of handing every request to a thread.

    What it trades: a token revoked through another process (another API replica) is still
    accepted here for up to ``ttl_s``; one revoked through this process (:meth:`forget`) is
    refused at once. Only acceptances are kept: a refused token is read afresh every time, so
    a token made a moment ago works at once and guessing gets no cheaper. Entries are keyed
    by the SHA-256 of what was presented, so no secret is held here."""

    def __init__(self, tokens: TokenStore, ttl_s: float = 5.0, size: int = 1024) -> None:
        check_non_negative("ttl_s", ttl_s)
        check_count("size", size)
        self.tokens, self.ttl_s, self.size = tokens, ttl_s, size
        self._seen: OrderedDict[str, tuple[ApiToken, float]] = OrderedDict()
        self._lock = threading.Lock()  # the event loop reads, request threads forget
        self._revoked: set[str] = set()  # revoked here: never kept again, even by a check
        # that read the row just before the revocation landed

    def cached(self, presented: str) -> ApiToken | None:
        """The token if this process accepted it within ``ttl_s``; None means: ask
        :meth:`authenticate` (which reads the database)."""
        key = _digest(presented)
        with self._lock:
            hit = self._seen.get(key)
            if hit is None:
                return None
            if self.tokens.clock.now() >= hit[1]:
                del self._seen[key]
                return None
            self._seen.move_to_end(key)
            return hit[0]

    def authenticate(self, presented: str) -> ApiToken | None:
        """:meth:`TokenStore.authenticate`, keeping an acceptance for ``ttl_s``."""
        token = self.tokens.authenticate(presented)
        if token is not None and self.ttl_s > 0:
            with self._lock:
                if token.id in self._revoked:
                    return token  # the read came before the revocation: answer, not kept
                key = _digest(presented)
                self._seen[key] = (token, self.tokens.clock.now() + self.ttl_s)
                self._seen.move_to_end(key)
                while len(self._seen) > self.size:
                    self._seen.popitem(last=False)
        return token

    def forget(self, token_id: str) -> None:
        """Drop a token from the cache (it was just revoked)."""
        with self._lock:
            self._revoked.add(token_id)
            for key in [k for k, (t, _) in self._seen.items() if t.id == token_id]:
                del self._seen[key]
