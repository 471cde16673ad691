"""A batch's output and error files, built from its committed line results when no line is left to run.

The files are written only from the DB rows, in input order, so a rebuild
(the finalizing runner died) writes the same files, and each custom_id
appears exactly once across the two: its row holds one result.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import update
from sqlalchemy.orm import Session

from appliance.batch.files import FileStore, new_file_id
from appliance.batch.store import BatchStore, now
from appliance.db.batches import BatchLineRow, BatchRow
from appliance.media.store import MediaStore

RENEW_EVERY = 5000  # lines written between two renewals of the finalize claim

CLOSED_LINES = {"cancelled": ("batch_cancelled", "The batch was cancelled before this request ran."),
                "expired": ("batch_expired", "The batch's completion window ended before this request ran.")}


def line_id(batch_id: str, line_no: int) -> str:
    """The output line's id: the same on every rebuild."""
    return "batch_req_" + hashlib.sha256(f"{batch_id}:{line_no}".encode()).hexdigest()[:24]


def error_code(surface: str, code: str) -> str:
    """The code a live request on the batch's surface would show."""
    return code.lower() if surface == "openai" else code


def output_line(batch: BatchRow, line: BatchLineRow) -> tuple[bool, str]:
    """(is it a success, its JSONL line)."""
    head = f'{{"id":{json.dumps(line_id(batch.id, line.line_no))},"custom_id":{json.dumps(line.custom_id)},'
    if line.state == "done":
        response = (f'{{"status_code":{line.status_code},"request_id":{json.dumps(line.request_id)},'
                    f'"body":{line.result}}}')
        return True, head + f'"response":{response},"error":null}}\n'
    if line.state in CLOSED_LINES:
        code, message = CLOSED_LINES[line.state]
    else:
        failure = json.loads(line.result or "{}")
        code, message = error_code(batch.surface, failure.get("code", "INTERNAL_ERROR")), failure.get("message", "")
    error = json.dumps({"code": code, "message": message}, separators=(",", ":"))
    return False, head + f'"response":null,"error":{error}}}\n'


@dataclass
class _Part:
    file_id: str
    path: Path
    fh: IO[str]
    lines: int = 0


def finalize(store: BatchStore, files: FileStore, media: MediaStore, batch: BatchRow, owner: str,
             retention_s: float) -> bool:
    """Write the batch's files and end it; False when another runner took over the finalization meanwhile."""
    parts = {ok: _Part(file_id, files.temporary(file_id), files.temporary(file_id).open("w", encoding="utf-8"))
             for ok, file_id in ((True, new_file_id()), (False, new_file_id()))}
    try:
        for number, line in enumerate(store.finished_lines(batch.id), start=1):
            ok, text = output_line(batch, line)
            parts[ok].fh.write(text)
            parts[ok].lines += 1
            if number % RENEW_EVERY == 0:
                store.renew_finalize(owner, batch.id)
        for part in parts.values():
            part.fh.flush()
            os.fsync(part.fh.fileno())
            part.fh.close()
        status = store.terminal_status(batch.id, batch.status)
        kept = {ok: part for ok, part in parts.items() if part.lines}
        for part in kept.values():
            part.path.rename(files.path(part.file_id))
        links = {ok: media.link(files.path(part.file_id), "application/jsonl", retention_s).token
                 for ok, part in kept.items()}
        try:
            with Session(store.engine) as session, session.begin():
                _commit(session, store, files, batch, owner, status, kept, links)
        except _TakenOver:
            files.delete([part.file_id for part in kept.values()])
            return False
        return True
    finally:
        for part in parts.values():
            part.fh.close()
            part.path.unlink(missing_ok=True)


def _commit(session: Session, store: BatchStore, files: FileStore, batch: BatchRow, owner: str, status: str,
            kept: dict[bool, _Part], links: dict[bool, str]) -> None:
    """End the batch with its files, in one transaction, if this runner still holds its finalization."""
    moved = session.execute(
        update(BatchRow).where(BatchRow.id == batch.id, BatchRow.finalizer == owner)
        .values(status=status, finalizer=None, output_file_id=kept[True].file_id if True in kept else None,
                error_file_id=kept[False].file_id if False in kept else None, **{f"{status}_at": now()})).rowcount
    if moved != 1:
        raise _TakenOver
    for ok, part in kept.items():
        purpose = "batch_output" if ok else "batch_error"
        files.add(session, part.file_id, batch.key_id, purpose, f"{batch.id}_{purpose.removeprefix('batch_')}.jsonl",
                  files.path(part.file_id).stat().st_size, media_token=links[ok])


class _TakenOver(Exception):
    pass
