"""Exports streamed from the state DB: rows read a few hundred at a time, written out as CSV, JSON or NDJSON.

Nothing holds the whole export: a thread reads the next batch of rows while
the previous one is on its way to the client, so memory stays flat however
long the window.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from pydantic import BaseModel

from appliance.serving.streaming import Stream

ExportFormat = Literal["csv", "json", "ndjson"]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/json", "ndjson": "application/x-ndjson"}
_DONE = object()


def _csv_line(values: list[Any]) -> bytes:
    out = io.StringIO()
    # A cell a spreadsheet would run as a formula starts with ' (OWASP's CSV injection advice).
    csv.writer(out, lineterminator="\r\n").writerow(
        ["'" + v if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else ("" if v is None else v)
         for v in values])
    return out.getvalue().encode()


async def _rows(batches: Iterator[list[Any]]) -> AsyncIterator[list[Any]]:
    """The batches of a blocking iterator, each read in a thread."""
    try:
        while True:
            batch = await asyncio.to_thread(next, batches, _DONE)
            if batch is _DONE:
                return
            yield batch  # type: ignore[misc]
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def export(batches: Iterator[list[Any]], item: Callable[[Any], BaseModel], columns: list[str], fmt: ExportFormat,
           filename: str) -> Stream:
    """A stream of the rows in ``fmt``; ``item`` turns a row into its API model (whose ``columns`` CSV writes)."""

    async def chunks() -> AsyncIterator[bytes]:
        first = True
        if fmt == "csv":
            yield _csv_line(columns)
        elif fmt == "json":
            yield b"["
        async for batch in _rows(batches):
            out = []
            for row in batch:
                data = item(row).model_dump(mode="json")
                if fmt == "csv":
                    out.append(_csv_line([data.get(column) for column in columns]))
                elif fmt == "ndjson":
                    out.append(json.dumps(data, separators=(",", ":")).encode() + b"\n")
                else:
                    out.append((b"" if first else b",") + json.dumps(data, separators=(",", ":")).encode())
                    first = False
            yield b"".join(out)
        if fmt == "json":
            yield b"]"

    return Stream(chunks(), MEDIA_TYPES[fmt],
                  headers={"Content-Disposition": f'attachment; filename="{filename}.{fmt}"'})
