"""API keys: ``sgk_`` + 43 random characters, shown once, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from appliance.db.tables import ApiKeyRow

PERMISSIONS = ("models:list", "models:use", "api_keys:manage", "admin:access")
DEFAULT_PERMISSIONS = ("models:list", "models:use")
KEY_PREFIX = "sgk_"


@dataclass(frozen=True)
class ApiKey:
    """What the appliance knows of a key, never the key itself."""

    id: str
    name: str
    prefix: str
    permissions: tuple[str, ...]
    models: tuple[str, ...] | None
    rate_limit: int | None
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or _aware(self.expires_at) > now


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix, permissions=tuple(row.permissions),
        models=tuple(row.models) if row.models is not None else None, rate_limit=row.rate_limit,
        created_at=_aware(row.created_at), revoked_at=row.revoked_at and _aware(row.revoked_at),
        expires_at=row.expires_at and _aware(row.expires_at),
    )


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._verified: dict[str, ApiKey] = {}  # key hash → key, while the DB is unchanged
        self._changes = _ChangeWatch(engine)

    def create(self, name: str, permissions: list[str] | None = None, models: list[str] | None = None,
               rate_limit: int | None = None, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
        """A new key; returns its record and the secret, which is not kept."""
        perms = list(permissions) if permissions else list(DEFAULT_PERMISSIONS)
        unknown = [p for p in perms if p not in PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown permission {unknown[0]!r}; known: {', '.join(PERMISSIONS)}")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("the rate limit must be a positive number of requests per minute")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(8), name=name, key_hash=hash_key(secret), prefix=secret[:8],
            permissions=perms, models=list(models) if models else None, rate_limit=rate_limit,
            created_at=datetime.now(UTC), revoked_at=None, expires_at=expires_at,
        )
        with Session(self.engine) as session, session.begin():
            session.add(row)
            session.flush()
            key = _to_key(row)
        return key, secret

    def list(self) -> list[ApiKey]:
        with Session(self.engine) as session:
            return [_to_key(row) for row in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]

    def revoke(self, key_id: str) -> bool:
        """Revoke at once; False when no active key has that id."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            return result.rowcount > 0

    def verify(self, token: str) -> ApiKey | None:
        """The active key whose secret is ``token``, or None.

        Known keys are remembered until anything in the DB changes (a revocation
        by the CLI included), so the hot path skips the query yet a revoked key
        fails on its very next request.
        """
        digest = hash_key(token)
        if self._changes.changed():
            self._verified.clear()
        key = self._verified.get(digest)
        if key is None:
            with Session(self.engine) as session:
                row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest)).first()
                if row is None:
                    return None
                key = _to_key(row)
            if self._changes.enabled:
                self._verified[digest] = key
        return key if key.active() else None


class _ChangeWatch:
    """Tells whether any connection committed to a SQLite DB since the last look (PRAGMA data_version)."""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        self._connection = (sqlite3.connect(database, check_same_thread=False)
                            if database and database != ":memory:" else None)
        self._version: int | None = None

    @property
    def enabled(self) -> bool:
        return self._connection is not None

    def changed(self) -> bool:
        if self._connection is None:
            return True  # other databases: no cheap signal, so always ask
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        changed, self._version = version != self._version, version
        return changed
