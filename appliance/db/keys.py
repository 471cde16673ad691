"""API keys: ``sgk_`` + 43 random characters, shown once, stored as SHA-256 only.

A key made over HTTP has a parent, the key that made it (``created_by``). A
family stays inside its parent: revoking a key revokes its descendants in the
same transaction, and shortening a key's expiry shortens theirs.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, true, tuple_, update
from sqlalchemy.orm import Session

from appliance.accounting.periods import PERIODS, UNITS
from appliance.db.database import transaction
from appliance.db.tables import DEFAULT_TENANT_ID, FIRST_ADMIN_ID, ApiKeyRow
from appliance.permissions import DEFAULT_PERMISSIONS, PERMISSIONS

KEY_PREFIX = "sgk_"


@dataclass(frozen=True)
class Budget:
    """A key's (a user's, a tenant's) limits over one period; a unit left None is not limited."""

    period: str
    tokens: int | None = None
    images: int | None = None
    audio_seconds: float | None = None
    cost: float | None = None  # in the currency of the catalogue's prices

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"unknown budget period {self.period!r}; known: {', '.join(PERIODS)}")
        limits = self.limits()
        if not limits:
            raise ValueError(f"a budget needs a limit in at least one unit ({', '.join(UNITS)})")
        for unit, limit in limits.items():
            if limit <= 0:
                raise ValueError(f"the {unit} budget must be a positive number")

    def limits(self) -> dict[str, float]:
        """unit → limit, for the units this budget limits."""
        values = {"tokens": self.tokens, "images": self.images, "audio_seconds": self.audio_seconds,
                  "cost": self.cost}
        return {unit: value for unit, value in values.items() if value is not None}


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
    budget: Budget | None = None
    created_by: str | None = None  # the key that made this one over HTTP; None: made by the CLI
    tenant_id: str = DEFAULT_TENANT_ID
    user_id: str | None = None  # the user it is assigned to (it acts for them, within their roles)

    def active(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or _aware(self.expires_at) > now


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """Stored in UTC: SQLite keeps a time's wall clock and drops its offset (a +05:00 expiry would last 5 h too
    long)."""
    return _aware(moment).astimezone(UTC) if moment is not None else None


def _to_key(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id, name=row.name, prefix=row.prefix, permissions=tuple(row.permissions),
        models=tuple(row.models) if row.models is not None else None, rate_limit=row.rate_limit,
        created_at=_aware(row.created_at), revoked_at=row.revoked_at and _aware(row.revoked_at),
        expires_at=row.expires_at and _aware(row.expires_at), created_by=row.created_by,
        budget=budget_of(row), tenant_id=row.tenant_id or DEFAULT_TENANT_ID, user_id=row.assigned_user_id,
    )


def budget_of(row: object) -> Budget | None:
    """The budget in a row's ``budget_*`` columns (a key's, a user's or a tenant's)."""
    period = getattr(row, "budget_period", None)
    if not period:
        return None
    return Budget(period, getattr(row, "budget_tokens"), getattr(row, "budget_images"),
                  getattr(row, "budget_audio_seconds"), getattr(row, "budget_cost", None))


def check_permissions(permissions: list[str]) -> None:
    unknown = [p for p in permissions if p not in PERMISSIONS]
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}; known: {', '.join(PERMISSIONS)}")


def budget_columns(budget: Budget | None) -> dict[str, object]:
    return {"budget_period": budget.period if budget else None, "budget_tokens": budget.tokens if budget else None,
            "budget_images": budget.images if budget else None,
            "budget_audio_seconds": budget.audio_seconds if budget else None,
            "budget_cost": budget.cost if budget else None}


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._verified: dict[str, ApiKey] = {}  # key hash → key, while the DB is unchanged
        self._parents: dict[str, ApiKey] = {}  # key id → key, for lineage(), likewise
        self._changes = _ChangeWatch(engine)
        self.generation = 0  # counts the changes seen: what caches of keys' users and tenants compare

    def create(self, name: str, permissions: list[str] | None = None, models: list[str] | None = None,
               rate_limit: int | None = None, expires_at: datetime | None = None, budget: Budget | None = None,
               created_by: str | None = None, user_id: str | None = FIRST_ADMIN_ID,
               tenant_id: str = DEFAULT_TENANT_ID, session: Session | None = None) -> tuple[ApiKey, str]:
        """A new key of ``user_id`` in ``tenant_id`` (by default the box's first admin, in the default tenant);
        returns its record and the secret, which is not kept."""
        perms = list(permissions) if permissions else list(DEFAULT_PERMISSIONS)
        check_permissions(perms)
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError("the rate limit must be a positive number of requests per minute")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(8), name=name, key_hash=hash_key(secret), prefix=secret[:8],
            permissions=perms, models=list(models) if models else None, rate_limit=rate_limit,
            created_at=now, updated_at=now, revoked_at=None, expires_at=_utc(expires_at), created_by=created_by,
            tenant_id=tenant_id, assigned_user_id=user_id, **budget_columns(budget),
        )
        with transaction(self.engine, session) as tx:
            tx.add(row)
            tx.flush()
            key = _to_key(row)
        return key, secret

    def list(self, created_by: str | None = None, tenant_id: str | None = None, user_id: str | None = None,
             after: str | None = None, limit: int | None = None) -> list[ApiKey]:
        """Keys oldest first (every key; with ``created_by``, the keys that key made and the key itself; with
        ``tenant_id`` or ``user_id``, that tenant's or user's), from the one after the key ``after`` (a page's
        cursor), at most ``limit``: one indexed query, whatever the number of keys."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
        if created_by is not None:
            query = query.where((ApiKeyRow.created_by == created_by) | (ApiKeyRow.id == created_by))
        if tenant_id is not None:
            query = query.where(ApiKeyRow.tenant_id == tenant_id)
        if user_id is not None:
            query = query.where(ApiKeyRow.assigned_user_id == user_id)
        with Session(self.engine) as session:
            if after is not None:
                cursor = session.get(ApiKeyRow, after)
                if cursor is None:
                    return []
                query = query.where(tuple_(ApiKeyRow.created_at, ApiKeyRow.id) > (cursor.created_at, cursor.id))
            if limit is not None:
                query = query.limit(limit)
            return [_to_key(row) for row in session.scalars(query)]

    def get(self, key_id: str, session: Session | None = None) -> ApiKey | None:
        with transaction(self.engine, session) as tx:
            row = tx.get(ApiKeyRow, key_id)
            return _to_key(row) if row is not None else None

    def revoke_all(self, session: Session, *, user_id: str | None = None, tenant_id: str | None = None) -> int:
        """Revoke, in ``session``'s transaction, every active key of a user or of a tenant, and the keys those
        made; how many."""
        assert user_id is not None or tenant_id is not None
        query = select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))
        if user_id is not None:
            query = query.where(ApiKeyRow.assigned_user_id == user_id)
        if tenant_id is not None:
            query = query.where(ApiKeyRow.tenant_id == tenant_id)
        now = datetime.now(UTC)
        revoked = 0
        for row in list(session.scalars(query)):
            for key in (row, *self._descendants(session, row.id)):
                if key.revoked_at is None:
                    key.revoked_at, key.updated_at = now, now
                    revoked += 1
        return revoked

    def update(self, key_id: str, session: Session | None = None, **changes: object) -> ApiKey | None:
        """Change ``name``, ``models``, ``rate_limit``, ``expires_at`` or ``budget`` of a key; None if unknown."""
        values = dict(changes)
        if "expires_at" in values:
            values["expires_at"] = _utc(values["expires_at"])  # type: ignore[arg-type]
        if "budget" in values:
            values.update(budget_columns(values.pop("budget")))  # type: ignore[arg-type]
        if "models" in values:
            values["models"] = list(values["models"]) if values["models"] else None  # type: ignore[call-overload]
        with transaction(self.engine, session) as tx:
            row = tx.get(ApiKeyRow, key_id)
            if row is None:
                return None
            for column, value in values.items():
                setattr(row, column, value)
            row.updated_at = datetime.now(UTC)
            if row.expires_at is not None:  # no descendant outlives it
                for child in self._descendants(tx, key_id):
                    if child.expires_at is None or _aware(child.expires_at) > _aware(row.expires_at):
                        child.expires_at, child.updated_at = row.expires_at, row.updated_at
            tx.flush()
            return _to_key(row)

    def revoke(self, key_id: str, session: Session | None = None) -> bool:
        """Revoke at once, with every key it made and they made, in one transaction; False when no active key has
        that id."""
        now = datetime.now(UTC)
        with transaction(self.engine, session) as tx:
            result = tx.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
            for child in self._descendants(tx, key_id):
                if child.revoked_at is None:
                    child.revoked_at, child.updated_at = now, now
            return result.rowcount > 0

    @staticmethod
    def _descendants(session: Session, key_id: str) -> list[ApiKeyRow]:
        """Every key ``key_id`` made, and every key those made, breadth first."""
        found: list[ApiKeyRow] = []
        parents = [key_id]
        seen = {key_id}
        while parents:
            children = [row for row in session.scalars(select(ApiKeyRow).where(ApiKeyRow.created_by.in_(parents)))
                        if row.id not in seen]
            seen.update(row.id for row in children)
            found += children
            parents = [row.id for row in children]
        return found

    def lineage(self, key: ApiKey) -> list[ApiKey]:
        """The keys above ``key``: its parent, the parent's parent, … (cached while the keys are unchanged)."""
        out: list[ApiKey] = []
        parent_id = key.created_by
        while parent_id is not None and len(out) < 64:
            if self._changes.changed():
                self._verified.clear()
                self._parents.clear()
                self.generation += 1
            parent = self._parents.get(parent_id)
            if parent is None:
                parent = self.get(parent_id)
                if parent is None:
                    break
                if self._changes.enabled:
                    self._parents[parent_id] = parent
            out.append(parent)
            parent_id = parent.created_by
        return out

    def verify(self, token: str) -> ApiKey | None:
        """The active key whose secret is ``token``, or None.

        Known keys are remembered until anything in the DB changes (a revocation
        by the CLI included), so the hot path skips the query yet a revoked key
        fails on its very next request.
        """
        digest = hash_key(token)
        if self._changes.changed():
            self._verified.clear()
            self._parents.clear()
            self.generation += 1
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
    """Tells whether the keys of a SQLite DB changed since the last look.

    PRAGMA data_version (free) says whether anything was committed; usage rows
    are, several times a second, so only then are the key, user and tenant
    tables asked for their count and latest change.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        self._connection = (sqlite3.connect(database, check_same_thread=False)
                            if database and database != ":memory:" else None)
        self._version: int | None = None
        self._keys: tuple[object, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self._connection is not None

    def changed(self) -> bool:
        if self._connection is None:
            return True  # other databases: no cheap signal, so always ask
        version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return False
        self._version = version
        keys = tuple(self._connection.execute(
            "SELECT (SELECT count(*) FROM api_keys), (SELECT max(updated_at) FROM api_keys), "
            "(SELECT max(updated_at) FROM users), (SELECT max(updated_at) FROM tenants)").fetchone())
        changed, self._keys = keys != self._keys, keys
        return changed


def owned_by(column: Any, owner: str | None) -> Any:
    """A clause on a ``key_id`` column: the rows of key ``owner`` (``key_…``), of every key of tenant ``owner``
    (``ten_…``), or every row (None: a box admin's view)."""
    if owner is None:
        return true()
    if owner.startswith("ten_"):
        return column.in_(select(ApiKeyRow.id).where(ApiKeyRow.tenant_id == owner))
    return column == owner
