"""Batches: files, batches and their lines.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "batch_files",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("media_token", sa.String(80), nullable=True),
    )
    op.create_index("ix_batch_files_key_id", "batch_files", ["key_id"])
    op.create_index("ix_batch_files_created_at", "batch_files", ["created_at"])
    op.create_table(
        "batches",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("surface", sa.String(10), nullable=False),
        sa.Column("endpoint", sa.String(60), nullable=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("completion_window", sa.String(4), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("finalizer", sa.String(40), nullable=True),
        _when("created_at", nullable=False), _when("expires_at", nullable=False),
        _when("in_progress_at"), _when("finalizing_at"), _when("completed_at"), _when("failed_at"),
        _when("expired_at"), _when("cancelling_at"), _when("cancelled_at"),
    )
    op.create_index("ix_batches_key_id", "batches", ["key_id"])
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_table(
        "batch_lines",
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("line_no", sa.Integer(), primary_key=True),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("url", sa.String(60), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("owner", sa.String(40), nullable=True),
        _when("claimed_at"),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("request_id", sa.String(140), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        _when("finished_at"),
    )
    op.create_index("ix_batch_lines_batch_state", "batch_lines", ["batch_id", "state"])
    op.create_index("ix_batch_lines_state_claimed", "batch_lines", ["state", "claimed_at"])


def downgrade() -> None:
    op.drop_table("batch_lines")
    op.drop_table("batches")
    op.drop_table("batch_files")
