"""Accounting: usage rows, budget counters and reservations, and each key's budget and creator.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:  # SQLite cannot ALTER much; batch mode copies the table
        batch.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("created_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(8), nullable=True))
        batch.add_column(sa.Column("budget_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_images", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("budget_audio_seconds", sa.Float(), nullable=True))
        batch.create_index("ix_api_keys_created_by", ["created_by"])
    op.create_table(
        "usage",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(140), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("backend_id", sa.String(200), nullable=True),
        sa.Column("route", sa.String(100), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(40), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("image_size", sa.String(20), nullable=True),
        sa.Column("audio_seconds_in", sa.Float(), nullable=False),
        sa.Column("audio_seconds_out", sa.Float(), nullable=False),
        sa.Column("characters", sa.Integer(), nullable=False),
    )
    op.create_index("ix_usage_created_at", "usage", ["created_at"])
    op.create_index("ix_usage_key_id", "usage", ["key_id"])
    op.create_table(
        "budget_spend",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("unit", sa.String(16), primary_key=True),
        sa.Column("period_start", sa.String(20), primary_key=True),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.Column("reserved", sa.Float(), nullable=False),
    )
    op.create_table(
        "budget_reservations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("period_start", sa.String(20), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_budget_reservations_expires_at", "budget_reservations", ["expires_at"])


def downgrade() -> None:
    op.drop_table("budget_reservations")
    op.drop_table("budget_spend")
    op.drop_table("usage")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_created_by")
        for column in ("budget_audio_seconds", "budget_images", "budget_tokens", "budget_period", "created_by",
                       "updated_at"):
            batch.drop_column(column)
