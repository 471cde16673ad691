"""A batch's input, read once, line by line: each line checked, then indexed into the DB with the batch.

The file is streamed (never held whole); what stays in memory is the set of
custom ids seen, to find duplicates. A file with a bad line makes the batch
``failed`` before any line runs, naming the first 100 bad lines.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from appliance.batch import endpoints
from appliance.db.batches import BatchLineRow, BatchRow

MAX_ERRORS = 100
CHUNK_ROWS = 1000
WINDOWS = {"24h": timedelta(hours=24), "4h": timedelta(hours=4), "1h": timedelta(hours=1)}


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


@dataclass
class Problems:
    items: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(self, code: str, line: int | None, message: str) -> None:
        self.count += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append({"code": code, "line": line, "message": message})


def check_line(raw: bytes, number: int, surface: str, endpoint: str | None, seen: set[str],
               problems: Problems) -> tuple[str, str, str] | None:
    """The line's (custom_id, url, model), or None after noting what is wrong with it."""
    try:
        line = json.loads(raw)
    except ValueError:
        problems.add("invalid_json_line", number, f"line {number} is not a JSON object (the file must be JSONL)")
        return None
    except RecursionError:
        problems.add("invalid_json_line", number, f"line {number} is nested too deeply to be a request")
        return None
    if not isinstance(line, dict):
        problems.add("invalid_json_line", number, f"line {number} is JSON but not an object")
        return None
    missing = [name for name in ("custom_id", "method", "url", "body") if name not in line]
    if missing:
        problems.add("missing_required_parameter", number, f"line {number} lacks {', '.join(missing)}")
        return None
    custom_id, url, body = line["custom_id"], line["url"], line["body"]
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > 512:
        problems.add("invalid_custom_id", number, f"line {number}: custom_id must be a string of 1 to 512 characters")
        return None
    if custom_id in seen:
        problems.add("duplicate_custom_id", number, f"line {number}: custom_id '{custom_id[:80]}' is used twice")
        return None
    seen.add(custom_id)
    if line["method"] != "POST":
        problems.add("invalid_method", number, f"line {number}: method must be POST")
        return None
    allowed = endpoints.SCAIGRID if surface == "scaigrid" else endpoints.OPENAI
    if not isinstance(url, str) or url not in allowed:
        problems.add("invalid_url", number, f"line {number}: url '{str(url)[:80]}' is not a batchable endpoint; "
                                            f"use one of {', '.join(allowed)}")
        return None
    if endpoint is not None and url != endpoint:
        problems.add("mismatched_endpoint", number, f"line {number}: url '{url}' differs from the batch's "
                                                    f"endpoint '{endpoint}'")
        return None
    if not isinstance(body, dict):
        problems.add("invalid_body", number, f"line {number}: body must be a JSON object")
        return None
    model = body.get("model")
    return custom_id, url, model if isinstance(model, str) else ""


def scan(path: Path, batch_id: str, surface: str, endpoint: str | None,
         problems: Problems) -> Iterator[dict[str, Any]]:
    """The rows of the file's good lines, in order; bad ones are noted in ``problems``."""
    seen: set[str] = set()
    offset = 0
    number = 0
    with path.open("rb") as fh:
        for raw in fh:
            number += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue  # blank lines (a trailing newline) carry nothing
            checked = check_line(raw, number, surface, endpoint, seen, problems)
            if checked is not None:
                custom_id, url, model = checked
                yield {"batch_id": batch_id, "line_no": number, "custom_id": custom_id, "url": url,
                       "model": model[:200], "offset": start, "length": len(raw), "state": "queued"}
    if number == 0:
        problems.add("empty_file", None, "the input file is empty; it needs one JSON request per line")


def create_batch(engine: Engine, *, key_id: str, surface: str, endpoint: str | None, input_file_id: str,
                 input_path: Path, window: str, metadata: dict[str, str] | None) -> BatchRow:
    """Check and index the input, and store the batch: ``in_progress``, or ``failed`` naming its bad lines."""
    batch_id = new_batch_id()
    now = datetime.now(UTC)
    problems = Problems()

    def batch(failed: bool, total: int) -> BatchRow:
        return BatchRow(id=batch_id, key_id=key_id, surface=surface, endpoint=endpoint,
                        status="failed" if failed else "in_progress", completion_window=window,
                        metadata_=metadata or None, errors=problems.items if failed else None, total=total,
                        input_file_id=input_file_id, created_at=now, expires_at=now + WINDOWS[window],
                        in_progress_at=None if failed else now, failed_at=now if failed else None)

    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            total = 0
            chunk: list[dict[str, Any]] = []
            for row in scan(input_path, batch_id, surface, endpoint, problems):
                total += 1
                if problems.count:
                    continue  # the batch fails: scan on for the report, store no more lines
                chunk.append(row)
                if len(chunk) >= CHUNK_ROWS:
                    session.execute(insert(BatchLineRow), chunk)
                    chunk = []
            if problems.count:
                raise _Invalid  # rolls back every line stored so far
            if chunk:
                session.execute(insert(BatchLineRow), chunk)
            good = batch(False, total)
            session.add(good)
        return good
    except _Invalid:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            bad = batch(True, 0)
            session.add(bad)
        return bad


class _Invalid(Exception):
    pass
