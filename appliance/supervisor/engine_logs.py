"""One log file per model under the state directory: what its engine prints, kept out of the console.

vLLM alone prints a hundred lines of configuration while it starts; on the
console they buried the one line a person needs (the model is ready). Every
engine's stdout and stderr go to ``STATE/logs/<model>.log`` instead (0600,
the previous run's file kept as ``.log.1`` once it grows past a limit), and
``appliance logs MODEL`` shows it. Under systemd (``JOURNAL_STREAM`` set) the
same lines also go to the journal, tagged ``appliance/<model>``
(``journalctl -t appliance/openai/tts-1``): a thread copies the engine's pipe
to both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
from pathlib import Path
from typing import IO

log = logging.getLogger("appliance.supervisor")

JOURNAL_SOCKET = "/run/systemd/journal/stdout"  # journald's stream socket (what StandardOutput=journal uses)

from appliance.state_dir import PRIVATE_FILE_MODE, make_private_dir

ROTATE_BYTES = 20 * 1024 * 1024

_directory: Path | None = None
_open: dict[str, IO[bytes]] = {}  # one open handle per model: the parent's copy of the worker's stdout


def set_directory(directory: Path | None) -> None:
    """Where engine logs go (the gateway sets STATE/logs); unset, workers share the gateway's stdout."""
    global _directory
    _directory = directory


def log_name(slug: str) -> str:
    """``openai/tts-1`` → ``openai--tts-1.log``: readable, and no slug can name a path outside the directory."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", slug.replace("/", "--")).lstrip(".") + ".log"


def log_path(directory: Path, slug: str) -> Path:
    return directory / log_name(slug)


def engine_log(slug: str) -> IO[bytes] | None:
    """The file the engine of ``slug`` writes to from its next start on; None (inherit) when none is set."""
    if _directory is None:
        return None
    make_private_dir(_directory)
    path = log_path(_directory, slug)
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    handle = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab")
    journal = _journal_stream(slug) if os.environ.get("JOURNAL_STREAM") else None
    if journal is not None:
        read_end, write_end = os.pipe()
        threading.Thread(target=_copy, args=(read_end, handle, journal), name=f"log {slug}", daemon=True).start()
        handle = os.fdopen(write_end, "wb")
    previous = _open.pop(slug, None)
    if previous is not None:
        previous.close()  # the engine it served has been replaced; the child keeps its own copy
    _open[slug] = handle
    return handle


def _journal_stream(slug: str) -> socket.socket | None:
    """A stream to journald whose lines carry ``appliance/<slug>`` as their identifier; None if it is not there."""
    try:
        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.connect(JOURNAL_SOCKET)
        stream.shutdown(socket.SHUT_RD)
        # journald's stream header: identifier, unit id, priority, level prefix, to syslog, to kmsg, to console.
        stream.sendall(f"appliance/{slug}\n\n6\n0\n0\n0\n0\n".encode())
        return stream
    except OSError as exc:
        log.warning("%s: engine output goes to its log file only; the journal is not reachable (%s)", slug, exc)
        return None


def _copy(read_end: int, file: IO[bytes], journal: socket.socket) -> None:
    """Copy what the engine writes to its file and the journal until the engine's end of the pipe closes."""
    with os.fdopen(read_end, "rb", buffering=0) as pipe, file, journal:
        while chunk := pipe.read(65536):
            file.write(chunk)
            file.flush()
            with contextlib.suppress(OSError):  # a journal that went away costs the journal copy, not the file
                journal.sendall(chunk)


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of ``path`` (read from the end: a log may be large)."""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        block, data = 64 * 1024, b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            fh.seek(size)
            data = fh.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:] if lines > 0 else []
