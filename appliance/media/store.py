"""Files under ``<state_dir>/media`` with their metadata in the state DB, each behind one expiring token.

A file is written in full (temporary name, fsync, rename) before its row is
committed, so a token never points at half a file and a crash leaves at most an
orphan file, which the sweep removes later. Files are named by the hash of
their token, so no request can name a path: a token is checked for shape,
hashed, and looked up.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from appliance.db.media import MediaRow
from appliance.media import tokens
from appliance.media.files import fsync_dir, is_handover_name, write_atomically
from appliance.state_dir import make_private_dir

# Files with no row (a crash between the file and its row) are removed once this old; a put takes far less.
ORPHAN_GRACE_S = 3600.0
EXTENSIONS = {"image/png": ".png", "application/jsonl": ".jsonl", "application/json": ".json"}
DEFAULT_SHARE_OF_DISK = 10  # unset max_media_bytes: a tenth of the state dir's filesystem
FULL_RETRY_S = 60  # when nothing is due to expire, a guess at when room may come back


class MediaFull(Exception):
    """No room for new media until files expire; ``retry_after`` says when some will have."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _filesystem_of(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def default_max_bytes(root: Path) -> int:
    return shutil.disk_usage(_filesystem_of(root)).total // DEFAULT_SHARE_OF_DISK


def default_min_free_bytes(root: Path) -> int:
    """Free space media never take: what the state DB needs to keep committing (5 % of the disk, at most 1 GiB)."""
    return min(shutil.disk_usage(_filesystem_of(root)).total // 20, 1 << 30)


@dataclass(frozen=True)
class StoredMedia:
    token: str
    expires_at: float  # unix time


@dataclass(frozen=True)
class MediaFile:
    path: Path
    content_type: str
    size: int
    expires_at: float  # unix time


def _to_unix(moment: datetime) -> float:
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _to_datetime(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


class MediaStore:
    """Put bytes in, get a token back; open a token while it is valid; sweep what expired."""

    def __init__(self, engine: Engine, root: Path, ttl_s: float, clock: Callable[[], float] = time.time,
                 max_bytes: int | None = None, min_free_bytes: int | None = None) -> None:
        self.engine = engine
        self.root = root
        self.ttl_s = ttl_s
        self.clock = clock
        make_private_dir(root)  # the media table comes with the DB's migrations
        self.max_bytes = default_max_bytes(root) if max_bytes is None else max_bytes
        self.min_free_bytes = default_min_free_bytes(root) if min_free_bytes is None else min_free_bytes
        self._room = threading.Lock()  # puts run in threads: a check and its write go together

    def put(self, data: bytes, content_type: str = "image/png", ttl_s: float | None = None) -> StoredMedia:
        """Store ``data`` durably and return its new token, valid for ``ttl_s`` (default: the store's TTL)."""
        return self.put_all([data], content_type, ttl_s)[0]

    def put_all(self, blobs: list[bytes], content_type: str = "image/png",
                ttl_s: float | None = None) -> list[StoredMedia]:
        """Store every blob or none: MediaFull when they do not fit under ``max_bytes`` even after a sweep."""
        with self._room:
            self._make_room(sum(len(blob) for blob in blobs))
            return [self._put_one(blob, content_type, ttl_s) for blob in blobs]

    def adopt(self, names: list[str], content_type: str = "image/png",
              ttl_s: float | None = None) -> list[StoredMedia]:
        """Register files a local worker already wrote whole into the directory, without reading them.

        Each is renamed to its token's hash and gets a row, all or none: on
        any failure (MediaFull, a name that is not a finished hand-over, a
        failing DB) the handed-over files are removed, so nothing stays behind
        unregistered and no token points at a file that is not complete.
        """
        paths = [self.root / name for name in names]
        try:
            sizes = [self._handed_over_size(path) for path in paths]
            with self._room:
                self._make_room(sum(sizes))
                return self._register(paths, sizes, content_type, ttl_s)
        except BaseException:
            for path in paths:
                if is_handover_name(path.name):
                    path.unlink(missing_ok=True)
            raise

    def used_bytes(self) -> int:
        with Session(self.engine) as session:
            return int(session.scalar(select(func.coalesce(func.sum(MediaRow.size), 0))) or 0)

    def _make_room(self, need: int) -> None:
        if self._fits(need):
            return
        self.sweep()  # what expired goes first
        if self._fits(need):
            return
        retry_after = self._next_expiry_in()
        raise MediaFull(f"the media store is full ({self.used_bytes()} of {self.max_bytes} bytes in use, "
                        f"{need} more needed); files expire and make room within {retry_after} s", retry_after)

    def _fits(self, need: int) -> bool:
        free = shutil.disk_usage(self.root).free
        return self.used_bytes() + need <= self.max_bytes and free - need >= self.min_free_bytes

    def _next_expiry_in(self) -> int:
        with Session(self.engine) as session:
            soonest = session.scalar(select(func.min(MediaRow.expires_at)))
        if soonest is None:
            return FULL_RETRY_S
        return max(1, math.ceil(_to_unix(soonest) - self.clock()))

    def _handed_over_size(self, path: Path) -> int:
        """The size of a finished hand-over file (a regular file under a hand-over name, never a temporary one)."""
        if not is_handover_name(path.name):
            raise ValueError(f"'{path.name}' is not the name of a finished image file")
        info = os.lstat(path)  # FileNotFoundError for a name the worker never finished
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"'{path.name}' is not a regular file")
        return info.st_size

    def _register(self, paths: list[Path], sizes: list[int], content_type: str,
                  ttl_s: float | None) -> list[StoredMedia]:
        now = self.clock()
        expires_at = now + (self.ttl_s if ttl_s is None else ttl_s)
        stored, rows, renamed = [], [], []
        try:
            for path, size in zip(paths, sizes, strict=True):
                token = tokens.new_token()
                digest = tokens.digest(token)
                filename = digest + EXTENSIONS.get(content_type, ".bin")
                os.replace(path, self.root / filename)
                renamed.append(self.root / filename)
                rows.append(MediaRow(digest=digest, filename=filename, content_type=content_type, size=size,
                                     created_at=_to_datetime(now), expires_at=_to_datetime(expires_at)))
                stored.append(StoredMedia(token=token, expires_at=expires_at))
            fsync_dir(self.root)  # the renames are durable before any row names them
            with Session(self.engine) as session, session.begin():
                session.add_all(rows)
        except BaseException:
            for path in renamed:
                path.unlink(missing_ok=True)
            raise
        return stored

    def _put_one(self, data: bytes, content_type: str, ttl_s: float | None) -> StoredMedia:
        token = tokens.new_token()
        digest = tokens.digest(token)
        filename = digest + EXTENSIONS.get(content_type, ".bin")
        write_atomically(self.root / filename, lambda fh: fh.write(data))
        now = self.clock()
        expires_at = now + (self.ttl_s if ttl_s is None else ttl_s)
        row = MediaRow(digest=digest, filename=filename, content_type=content_type, size=len(data),
                       created_at=_to_datetime(now), expires_at=_to_datetime(expires_at))
        with Session(self.engine) as session, session.begin():
            session.add(row)
        return StoredMedia(token=token, expires_at=expires_at)

    def link(self, source: Path, content_type: str, ttl_s: float) -> StoredMedia:
        """Serve an existing file (a batch's results) under a new token without copying it: a hard link."""
        token = tokens.new_token()
        digest = tokens.digest(token)
        filename = digest + EXTENSIONS.get(content_type, ".bin")
        try:
            os.link(source, self.root / filename)
        except OSError:  # another filesystem: a copy, written whole before its row exists
            shutil.copyfile(source, self.root / filename)
        now = self.clock()
        row = MediaRow(digest=digest, filename=filename, content_type=content_type, size=source.stat().st_size,
                       created_at=_to_datetime(now), expires_at=_to_datetime(now + ttl_s))
        with Session(self.engine) as session, session.begin():
            session.add(row)
        return StoredMedia(token=token, expires_at=now + ttl_s)

    def open(self, token: str) -> MediaFile | None:
        """The file behind ``token``; None when the token is malformed, unknown or expired, or its file is gone."""
        if not tokens.is_well_formed(token):
            return None
        with Session(self.engine) as session:
            row = session.get(MediaRow, tokens.digest(token))
            if row is None:
                return None
            expires_at = _to_unix(row.expires_at)
            filename, content_type, size = row.filename, row.content_type, row.size
        if expires_at <= self.clock():
            return None
        path = self.root / filename
        if path.parent != self.root or not path.is_file():  # the name is ours, but check anyway
            return None
        return MediaFile(path=path, content_type=content_type, size=size, expires_at=expires_at)

    def sweep(self) -> int:
        """Remove expired files and their rows, and old orphan files; returns how many files went."""
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            expired = list(session.scalars(select(MediaRow).where(MediaRow.expires_at <= _to_datetime(now))))
            names = [row.filename for row in expired]
            if expired:
                session.execute(delete(MediaRow).where(MediaRow.digest.in_([row.digest for row in expired])))
        removed = 0
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                (self.root / name).unlink()
                removed += 1
        return removed + self._sweep_orphans(now)

    # --- internals --------------------------------------------------------

    def _sweep_orphans(self, now: float) -> int:
        with Session(self.engine) as session:
            known = set(session.scalars(select(MediaRow.filename)))
        removed = 0
        for path in self.root.iterdir():
            if path.name in known or not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_GRACE_S:
                    path.unlink()
                    removed += 1
        return removed
