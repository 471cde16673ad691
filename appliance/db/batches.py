"""The batch tables: uploaded and produced files, batches, and one row per input line (its state and result)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.database import Base


class BatchFileRow(Base):
    """A file under ``<state_dir>/files``: a batch input someone uploaded, or a batch's output or error file."""

    __tablename__ = "batch_files"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # listing order and cursor
    id: Mapped[str] = mapped_column(String(40), unique=True)  # file-…
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    purpose: Mapped[str] = mapped_column(String(20))  # batch | batch_output | batch_error
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    media_token: Mapped[str | None] = mapped_column(String(80), nullable=True)  # its /v1/media/ link, if any


class BatchRow(Base):
    __tablename__ = "batches"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)  # batch_…
    key_id: Mapped[str] = mapped_column(String(32), index=True)
    surface: Mapped[str] = mapped_column(String(10))  # scaigrid | openai: the shape of each line's answer
    endpoint: Mapped[str | None] = mapped_column(String(60), nullable=True)  # the one endpoint of an OpenAI batch
    status: Mapped[str] = mapped_column(String(12), index=True)
    completion_window: Mapped[str] = mapped_column(String(4))
    metadata_: Mapped[dict[str, str] | None] = mapped_column("metadata", JSON, nullable=True)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    input_file_id: Mapped[str] = mapped_column(String(40))
    output_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_file_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    finalizer: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the runner writing its files
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the end of its completion window
    in_progress_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finalizing_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BatchLineRow(Base):
    """One input line: where it sits in the input file, who runs it, and its committed result."""

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ix_batch_lines_batch_state", "batch_id", "state"),
                      Index("ix_batch_lines_state_claimed", "state", "claimed_at"))

    batch_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)  # 1-based, as a person counts lines
    custom_id: Mapped[str] = mapped_column(String(512))
    url: Mapped[str] = mapped_column(String(60))
    model: Mapped[str] = mapped_column(String(200))  # as the line names it (resolved when it runs)
    offset: Mapped[int] = mapped_column(BigInteger)  # the line's bytes in the input file
    length: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10))  # queued | running | done | failed | cancelled | expired
    owner: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the runner that claimed it
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(140), nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # the answer's JSON, or the error's
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
