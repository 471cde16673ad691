"""The media table: one row per stored file, keyed by the SHA-256 of its token (the token itself is never stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from appliance.db.database import Base


class MediaRow(Base):
    __tablename__ = "media"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(token) hex; also the file's stem
    filename: Mapped[str] = mapped_column(String(80))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
