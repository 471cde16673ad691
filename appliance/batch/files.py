"""Batch files: bytes under ``<state_dir>/files/<id>.jsonl``, a row each in the state DB.

A file is written in full (temporary name, fsync, rename) before its row is
committed, so a row never points at half a file; a crash leaves at most an
orphan temporary file, which ``sweep_partials`` removes (at start and then
periodically). An upload stops at the first chunk past its limit, past its
key's quota of stored bytes, or that would leave the disk less free space
than the state DB needs (``min_free_bytes``): a full disk would stop every
write, the deletes that could repair it included.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from appliance.db.batches import BatchFileRow
from appliance.db.keys import owned_by
from appliance.db.paging import newest_first
from appliance.media.store import default_min_free_bytes

TMP_PREFIX = ".tmp-"
PARTIAL_GRACE_S = 600.0  # a partial file untouched this long belongs to no upload or finalization in progress


class OverLimit(Exception):
    """The upload is larger than its size limit."""


class OverQuota(Exception):
    """The upload would take its key past its quota of stored bytes."""

    def __init__(self, used: int, quota: int) -> None:
        super().__init__(f"{used} of {quota} bytes used")
        self.used, self.quota = used, quota


class DiskNearlyFull(Exception):
    """The upload would leave less free space than the state DB needs."""

    def __init__(self, free: int, reserve: int) -> None:
        super().__init__(f"{free} bytes free, {reserve} kept for the state DB")
        self.free, self.reserve = free, reserve


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time in the DB is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FileStore:
    def __init__(self, engine: Engine, root: Path, quota_bytes: int | None = None,
                 min_free_bytes: int | None = None) -> None:
        self.engine = engine
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.quota_bytes = quota_bytes  # per key; None: no quota
        self.min_free_bytes = default_min_free_bytes(root) if min_free_bytes is None else min_free_bytes

    def path(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def temporary(self, file_id: str) -> Path:
        return self.root / f"{TMP_PREFIX}{file_id}"

    def write(self, file_id: str, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` durably as the file ``file_id`` (no row yet); its size."""
        tmp = self.temporary(file_id)
        size = 0
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(self.path(file_id))
        return size

    def add(self, session: Session, file_id: str, key_id: str, purpose: str, filename: str, size: int,
            media_token: str | None = None) -> BatchFileRow:
        row = BatchFileRow(id=file_id, key_id=key_id, purpose=purpose, filename=filename[:255], bytes=size,
                           created_at=datetime.now(UTC), media_token=media_token)
        session.add(row)
        return row

    def save(self, key_id: str, purpose: str, filename: str, source: BinaryIO, limit: int) -> BatchFileRow:
        """Copy ``source`` into a new file of the key.

        Raises OverLimit (over ``limit`` bytes), OverQuota (the key's stored
        bytes past its quota) or DiskNearlyFull, having written nothing.
        """
        file_id = new_file_id()
        used = self.stored_bytes(key_id) if self.quota_bytes is not None else 0
        seen = 0

        def chunks() -> Iterable[bytes]:
            nonlocal seen
            while chunk := source.read(1024 * 1024):
                seen += len(chunk)
                if seen > limit:
                    raise OverLimit
                if self.quota_bytes is not None and used + seen > self.quota_bytes:
                    raise OverQuota(used, self.quota_bytes)
                free = shutil.disk_usage(self.root).free
                if free - len(chunk) < self.min_free_bytes:
                    raise DiskNearlyFull(free, self.min_free_bytes)
                yield chunk

        try:
            size = self.write(file_id, chunks())
        except (OverLimit, OverQuota, DiskNearlyFull):
            self.temporary(file_id).unlink(missing_ok=True)
            raise
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            return self.add(session, file_id, key_id, purpose, filename, size)

    def stored_bytes(self, key_id: str) -> int:
        """What the key's files take on disk (its inputs and its batches' results)."""
        with Session(self.engine) as session:
            return int(session.scalar(select(func.coalesce(func.sum(BatchFileRow.bytes), 0))
                                      .where(BatchFileRow.key_id == key_id)) or 0)

    def sweep_partials(self, grace_s: float = PARTIAL_GRACE_S) -> int:
        """Remove partial files no writer has touched for ``grace_s`` (a crash or a refused upload left them)."""
        removed = 0
        cutoff = time.time() - grace_s
        for path in self.root.glob(f"{TMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def get(self, file_id: str, key_id: str | None) -> BatchFileRow | None:
        """The file, if ``key_id`` owns it (a key id; a tenant id: its admin; None: a box admin)."""
        with Session(self.engine) as session:
            return session.scalar(select(BatchFileRow).where(BatchFileRow.id == file_id,
                                                  owned_by(BatchFileRow.key_id, key_id)))

    def list(self, key_id: str | None, after: str | None, limit: int, purpose: str | None) -> list[BatchFileRow]:
        """Newest first; ``after`` is the id of the last file of the previous page."""
        where = [owned_by(BatchFileRow.key_id, key_id)]
        if purpose is not None:
            where.append(BatchFileRow.purpose == purpose)
        return newest_first(self.engine, BatchFileRow, limit, after, *where)

    def older_than(self, days: float) -> list[str]:
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with Session(self.engine) as session:
            return list(session.scalars(select(BatchFileRow.id).where(BatchFileRow.created_at < cutoff)))

    def delete(self, file_ids: Iterable[str]) -> None:
        ids = [file_id for file_id in file_ids if file_id]
        if not ids:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(delete(BatchFileRow).where(BatchFileRow.id.in_(ids)))
        for file_id in ids:
            self.path(file_id).unlink(missing_ok=True)
