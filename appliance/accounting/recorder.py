"""Usage rows leave the event loop at once: a deque, and one writer thread that inserts them in batches.

Queuing a row is one ``deque.append``: no lock and no thread wake-up on the
hot path. The writer wakes every ``interval_s`` (sooner when ``batch_size``
rows wait, or on ``flush``/``close``) and writes what is queued in one
transaction, so a busy gateway commits a few times a second rather than once
per request. ``close`` writes the rest, so a clean stop loses nothing. A
failed write is retried on the next round.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from appliance.accounting.store import UsageStore

log = logging.getLogger("appliance.accounting")

MAX_HELD_ROWS = 100_000  # what a failing DB may make us hold in memory before rows are dropped (and logged)


class UsageRecorder:
    def __init__(self, store: UsageStore, interval_s: float = 0.2, batch_size: int = 500) -> None:
        self.store = store
        self.interval_s = interval_s
        self.batch_size = batch_size
        self._rows: collections.deque[dict[str, Any]] = collections.deque()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._queued = 0  # counted by the one thread that records (the event loop's)
        self._finished = 0  # rows written or given up on, counted by the writer
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
            self._thread.start()

    def record(self, row: dict[str, Any]) -> None:
        """Queue one row (never blocks)."""
        self._queued += 1
        self._rows.append(row)
        if len(self._rows) >= self.batch_size:
            self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False on timeout."""
        target = self._queued
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._finished >= target, timeout)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        held: list[dict[str, Any]] = []
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            stopping = self._stopping  # read before draining: rows queued before close are all taken
            while self._rows:
                held.append(self._rows.popleft())
                if len(held) >= self.batch_size:
                    held = self._write(held)
                    if held:  # the DB refused: wait for the next round
                        break
            if held:
                held = self._write(held)
            if stopping and not self._rows:
                return

    def _write(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            self.store.add_many(rows)
        except Exception:
            log.exception("could not write %d usage rows; retrying", len(rows))
            if len(rows) <= MAX_HELD_ROWS:
                return rows
            log.error("dropping %d usage rows: the DB has refused them too long", len(rows))
        with self._done:
            self._finished += len(rows)
            self._done.notify_all()
        return []
