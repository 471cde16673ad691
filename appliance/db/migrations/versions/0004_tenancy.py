"""Tenancy: tenants, users, keys in a tenant and assigned to a user, scoped budgets, cost, and the audit log.

Every key made before this revision moves into the default tenant under the
box's first admin user (``box_admin``), so a single-tenant install works on
unchanged: its admin keys keep every power they had.

Revision ID: 0004_tenancy
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004_tenancy"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT_TENANT_ID = "ten_default"  # as in appliance/db/tables.py (a migration keeps its own copy: it never changes)
FIRST_ADMIN_ID = "usr_admin"
GENESIS = "0" * 64
APPEND_ONLY = "the audit log is append-only"


def _limits() -> list[sa.Column]:
    return [sa.Column("rate_limit", sa.Integer(), nullable=True),
            sa.Column("budget_period", sa.String(8), nullable=True),
            sa.Column("budget_tokens", sa.Integer(), nullable=True),
            sa.Column("budget_images", sa.Integer(), nullable=True),
            sa.Column("budget_audio_seconds", sa.Float(), nullable=True),
            sa.Column("budget_cost", sa.Float(), nullable=True)]


def _times() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True)]


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("models", sa.JSON(), nullable=True),
        *_limits(), *_times(),
    )
    users = op.create_table(
        "users",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        *_limits(), *_times(),
    )
    op.create_index("ix_users_tenant_id", "users", ["tenant_id"])
    op.create_index("ix_users_email", "users", ["email"])
    now = datetime.now(UTC)
    op.bulk_insert(tenants, [{"id": DEFAULT_TENANT_ID, "name": "default", "status": "active", "models": None,
                              "created_at": now, "updated_at": now}])
    op.bulk_insert(users, [{"id": FIRST_ADMIN_ID, "tenant_id": DEFAULT_TENANT_ID, "email": "admin@localhost",
                            "display_name": "Box administrator", "roles": ["box_admin"], "status": "active",
                            "created_at": now, "updated_at": now}])

    # Keys: a tenant and a user each (every existing key: the default tenant's first admin), a budget in cost.
    op.add_column("api_keys", sa.Column("tenant_id", sa.String(32), nullable=False, server_default=DEFAULT_TENANT_ID))
    op.add_column("api_keys", sa.Column("assigned_user_id", sa.String(32), nullable=True))
    op.add_column("api_keys", sa.Column("budget_cost", sa.Float(), nullable=True))
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_index("ix_api_keys_assigned_user_id", "api_keys", ["assigned_user_id"])
    op.execute(sa.text("UPDATE api_keys SET assigned_user_id = :user, tenant_id = :tenant")
               .bindparams(user=FIRST_ADMIN_ID, tenant=DEFAULT_TENANT_ID))

    # Usage rows: whose they were beyond the key, and their cost. Every earlier row was a key's of the first admin.
    op.add_column("usage", sa.Column("user_id", sa.String(32), nullable=True))
    op.add_column("usage", sa.Column("tenant_id", sa.String(32), nullable=True))
    op.add_column("usage", sa.Column("cost", sa.Float(), nullable=False, server_default="0"))
    op.create_index("ix_usage_user_id", "usage", ["user_id"])
    op.create_index("ix_usage_tenant_id", "usage", ["tenant_id"])
    op.execute(sa.text("UPDATE usage SET user_id = :user, tenant_id = :tenant WHERE key_id IS NOT NULL")
               .bindparams(user=FIRST_ADMIN_ID, tenant=DEFAULT_TENANT_ID))

    # Budgets count per scope (a key, a user or a tenant): ids are prefixed, so one column holds any of them.
    with op.batch_alter_table("budget_spend") as batch:
        batch.alter_column("key_id", new_column_name="scope_id", existing_type=sa.String(32), existing_nullable=False)
    with op.batch_alter_table("budget_reservations") as batch:
        batch.alter_column("key_id", new_column_name="scope_id", existing_type=sa.String(32), existing_nullable=False)
        batch.add_column(sa.Column("hold_id", sa.String(40), nullable=True))
    op.execute(sa.text("UPDATE budget_reservations SET hold_id = id"))
    with op.batch_alter_table("budget_reservations") as batch:
        batch.alter_column("hold_id", existing_type=sa.String(40), nullable=False)
        batch.create_index("ix_budget_reservations_hold_id", ["hold_id"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_email", sa.String(320), nullable=True),
        sa.Column("actor_type", sa.String(12), nullable=False),
        sa.Column("actor_key_id", sa.String(32), nullable=True),
        sa.Column("tenant_id", sa.String(32), nullable=True),
        sa.Column("resource_type", sa.String(40), nullable=True),
        sa.Column("resource_id", sa.String(200), nullable=True),
        sa.Column("ip_address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("request_id", sa.String(140), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    for column in ("timestamp", "action", "actor_id", "tenant_id"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    _append_only()


def _append_only() -> None:
    """The application only inserts audit events; the database refuses to change or remove one."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$")
        op.execute("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_table("audit_head")
    op.drop_table("audit_log")
    with op.batch_alter_table("budget_reservations") as batch:
        batch.drop_index("ix_budget_reservations_hold_id")
        batch.drop_column("hold_id")
        batch.alter_column("scope_id", new_column_name="key_id", existing_type=sa.String(32), existing_nullable=False)
    with op.batch_alter_table("budget_spend") as batch:
        batch.alter_column("scope_id", new_column_name="key_id", existing_type=sa.String(32), existing_nullable=False)
    with op.batch_alter_table("usage") as batch:
        batch.drop_index("ix_usage_tenant_id")
        batch.drop_index("ix_usage_user_id")
        for column in ("cost", "tenant_id", "user_id"):
            batch.drop_column(column)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_assigned_user_id")
        batch.drop_index("ix_api_keys_tenant_id")
        for column in ("budget_cost", "assigned_user_id", "tenant_id"):
            batch.drop_column(column)
    op.drop_table("users")
    op.drop_table("tenants")
