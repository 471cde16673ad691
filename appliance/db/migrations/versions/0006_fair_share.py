"""Fair share: each tenant's weight and minimum concurrency on a full model, and each usage row's wait for a slot.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as table:
        table.add_column(sa.Column("share_weight", sa.Float(), nullable=False, server_default="1"))
        table.add_column(sa.Column("min_concurrency", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("usage") as table:
        table.add_column(sa.Column("queue_wait_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage") as table:
        table.drop_column("queue_wait_ms")
    with op.batch_alter_table("tenants") as table:
        table.drop_column("min_concurrency")
        table.drop_column("share_weight")
