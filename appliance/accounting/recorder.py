"""Usage rows leave the event loop at once: a queue, and one writer thread that inserts them in batches.

The writer wakes every ``interval_s`` (or as soon as ``batch_size`` rows wait)
and writes what is queued in one transaction; ``close`` writes the rest, so a
clean stop loses nothing. A failed write is retried on the next round.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from appliance.accounting.store import UsageStore

log = logging.getLogger("appliance.accounting")

_STOP = object()
MAX_HELD_ROWS = 100_000  # what a failing DB may make us hold in memory before rows are dropped (and logged)


class UsageRecorder:
    def __init__(self, store: UsageStore, interval_s: float = 0.2, batch_size: int = 500) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch_size = batch_size
        self._queue: queue.Queue[Any] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
            self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (never blocks)."""
        with self._idle:
            self._pending += 1
        self._queue.put(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        held: list[dict[str, Any]] = []
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=self.interval_s)
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        held.append(item)
                    if len(held) >= self.batch_size:
                        break
                    item = self._queue.get_nowait()
            except queue.Empty:
                pass
            if held:
                held = self._write(held)

    def _write(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            self.store.add_many(rows)
        except Exception:
            log.exception("could not write %d usage rows; retrying", len(rows))
            if len(rows) <= MAX_HELD_ROWS:
                return rows
            log.error("dropping %d usage rows: the DB has refused them too long", len(rows))
        with self._idle:
            self._pending -= len(rows)
            self._idle.notify_all()
        return []
