"""The Responses API's tables: each stored response (its input, its Response object, its job), and the events of
a streamed background response (so a client can pick its stream up again)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.database import Base


class ResponseRow(Base):
    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_status_claimed", "status", "claimed_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # resp_…
    key_id: Mapped[str] = mapped_column(String(32), index=True)  # only this key sees it
    model: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))  # queued, in_progress; completed, incomplete, failed, cancelled
    background: Mapped[bool] = mapped_column(Boolean, default=False)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)  # background + stream: its events are kept
    previous_response_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # retention counts from here
    input_items: Mapped[str] = mapped_column(Text)  # JSON: this response's own input items, with their ids
    body: Mapped[str] = mapped_column(Text)  # JSON: the Response object as last written
    request: Mapped[str | None] = mapped_column(Text, nullable=True)  # background: the create request, to run it
    owner: Mapped[str | None] = mapped_column(String(40), nullable=True)  # background: the runner that runs it
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # background: runs started (a killed gateway's too)


class ResponseEventRow(Base):
    """One event of a streamed background response, as it went out (``event: …\\ndata: {…}``)."""

    __tablename__ = "response_events"

    response_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # its sequence_number
    frame: Mapped[str] = mapped_column(Text)
