"""Batch files: bytes under ``<state_dir>/files/<id>.jsonl``, a row each in the state DB.

A file is written in full (temporary name, fsync, rename) before its row is
committed, so a row never points at half a file; a crash leaves at most an
orphan temporary file.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from appliance.db.batches import BatchFileRow
from appliance.db.keys import owned_by
from appliance.db.paging import newest_first

TMP_PREFIX = ".tmp-"


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes; every time in the DB is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class FileStore:
    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

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

    def save(self, key_id: str, purpose: str, filename: str, source: BinaryIO, limit: int) -> BatchFileRow | None:
        """Copy ``source`` into a new file of the key; None when it is larger than ``limit`` bytes."""
        file_id = new_file_id()
        seen = 0

        def chunks() -> Iterable[bytes]:
            nonlocal seen
            while chunk := source.read(1024 * 1024):
                seen += len(chunk)
                if seen > limit:
                    raise OverLimit
                yield chunk

        try:
            size = self.write(file_id, chunks())
        except OverLimit:
            self.temporary(file_id).unlink(missing_ok=True)
            return None
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            return self.add(session, file_id, key_id, purpose, filename, size)

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


class OverLimit(Exception):
    pass
