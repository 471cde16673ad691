"""Responses: stored responses (input, Response object, background job) and the events of streamed background ones.

Revision ID: 0005
Revises: 0004_tenancy
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004_tenancy"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        _when("created_at", nullable=False),
        sa.Column("input_items", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(40), nullable=True),
        _when("claimed_at"),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    op.create_index("ix_responses_key_id", "responses", ["key_id"])
    op.create_index("ix_responses_created_at", "responses", ["created_at"])
    op.create_index("ix_responses_status_claimed", "responses", ["status", "claimed_at"])
    op.create_table(
        "response_events",
        sa.Column("response_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("frame", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("response_events")
    op.drop_table("responses")
