"""Writing a media file whole: a temporary name, fsync, rename, fsync of the directory.

Shared by the media store (bytes the gateway holds) and the image worker
(PNGs it encodes straight into the media directory), so a reader, or a crash,
never sees half a file under its final name.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from appliance.state_dir import PRIVATE_FILE_MODE

MEDIA_DIR_ENV = "APPLIANCE_MEDIA_DIR"  # how the supervisor tells a local worker where media files go
TMP_PREFIX = ".tmp-"  # never a final name: nothing registers it, the orphan sweep removes it
# A file a worker finished and hands to the gateway, which renames it to its token's hash.
_HANDOVER = re.compile(r"new-[0-9a-f]{32}\.png")


def handover_name() -> str:
    return f"new-{secrets.token_hex(16)}.png"


def is_handover_name(name: str) -> bool:
    return _HANDOVER.fullmatch(name) is not None


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> int:
    """Create ``target`` from what ``write`` puts into a file handle; returns its size in bytes."""
    tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE), "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return size


def fsync_dir(directory: Path) -> None:
    """Make the renames done in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
