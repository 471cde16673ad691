"""Room kept for the state DB on a full disk: a file that gives its space back, so the repairs can commit.

Uploads and media stop short of filling the disk (they keep ``min_free_bytes``),
but something else — logs, a model import, another program — can still fill
it, and then SQLite cannot commit anything: not even the delete or the
revocation that would make room. The reserve is a preallocated file in the
state directory; a repair that fails on a full disk releases it and tries
once more. It is taken again once there is room.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.exc import OperationalError

log = logging.getLogger("appliance.db")

RESERVE_NAME = ".db-reserve"
RESERVE_BYTES = 32 * 1024 * 1024
CHECK_S = 60.0
T = TypeVar("T")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database) is full: SQLite's SQLITE_FULL, or ENOSPC."""
    if isinstance(exc, OperationalError | sqlite3.OperationalError):
        reason = str(getattr(exc, "orig", None) or exc)
        return "database or disk is full" in reason or "No space left" in reason
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class DiskReserve:
    def __init__(self, state_dir: Path, size: int = RESERVE_BYTES) -> None:
        self.path = state_dir / RESERVE_NAME
        self.size = size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def hold(self) -> bool:
        """Take the reserve's space if it is not held (and the disk has room for it twice over); whether held."""
        if self.held:
            return True
        if shutil.disk_usage(self.path.parent).free < 2 * self.size:
            return False
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)  # real blocks: a sparse file would give nothing back
            finally:
                os.close(fd)
        except OSError:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's space back; whether there was any."""
        if not self.path.exists():
            return False
        self.path.unlink(missing_ok=True)
        log.error("the disk of the state directory is full: released the %d MB kept for the state DB so that "
                  "deletions and revocations can commit; free space on it", self.size // (1024 * 1024))
        return True

    def with_room(self, repair: Callable[[], T]) -> T:
        """Run ``repair`` (a delete, a revocation); on a full disk, release the reserve and run it once more."""
        try:
            return repair()
        except (OperationalError, OSError) as exc:
            if not is_disk_full(exc) or not self.release():
                raise
        return repair()

    async def keep(self) -> None:
        """Hold the reserve while the appliance runs (again, once a full disk has room)."""
        while True:
            await asyncio.to_thread(self.hold)
            await asyncio.sleep(CHECK_S)
