"""`appliance keys create|list|revoke`: API keys, straight in the state DB (the operator's side of /v1/api-keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, budget_of, budget_text, cli_event, fail, state_engine

keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who or what the key is for")],
    permission: Annotated[list[str] | None, typer.Option("--permission", "-p",
                          help="repeatable; default models:list and models:use")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="repeatable; default every model")] = None,
    rate_limit: Annotated[int | None, typer.Option(help="requests per minute; default no limit")] = None,
    budget_tokens: Annotated[int | None, typer.Option(help="tokens per budget period")] = None,
    budget_images: Annotated[int | None, typer.Option(help="images per budget period")] = None,
    budget_audio_seconds: Annotated[float | None, typer.Option(help="audio seconds per budget period")] = None,
    budget_cost: Annotated[float | None, typer.Option(help="cost per budget period, at the catalogue's prices")]
    = None,
    budget_period: Annotated[str, typer.Option(help="day, week, month or total")] = "day",
    expires: Annotated[str | None, typer.Option(help="ISO 8601 time the key stops working; default never")] = None,
    user: Annotated[str | None, typer.Option(help="the user the key acts for (usr_…); default the box's first "
                                                  "admin")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a key; the secret is printed once, alone on the last line."""
    from datetime import UTC, datetime

    from appliance.db.keys import KeyStore
    from appliance.db.tables import FIRST_ADMIN_ID
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import UserStore

    engine = state_engine(state_dir)
    store = KeyStore(engine)
    owner = UserStore(engine).get(user or FIRST_ADMIN_ID)
    if owner is None or owner.status != "active":
        raise fail(f"no active user with id {user}" if user else
                   "the box's first admin user was deleted or suspended; name the key's user with --user")
    try:
        budget = budget_of(budget_period, budget_tokens, budget_images, budget_audio_seconds, budget_cost)
        expires_at = datetime.fromisoformat(expires) if expires else None
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise ValueError(f"--expires {expires} is in the past")
        event = cli_event("api_key.create", "api_key", tenant_id=owner.tenant_id,
                          details={"name": name, "assigned_user_id": owner.id})
        with AuditLog(engine).change(event) as session:
            key, secret = store.create(name, permission, model, rate_limit, expires_at, budget, user_id=owner.id,
                                       tenant_id=owner.tenant_id, session=session)
            event.resource_id = key.id
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {key.id} ({key.name}) for {owner.email} in {owner.tenant_id}: permissions "
               f"{', '.join(key.permissions)}; models {', '.join(key.models) if key.models else 'all'}; "
               f"rate limit {f'{key.rate_limit}/min' if key.rate_limit else 'none'}; "
               f"budget {budget_text(key.budget)}. The key is shown only now:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(state_dir: StateDirOption = None) -> None:
    """Every key, without its secret."""
    from appliance.db.keys import KeyStore

    store = KeyStore(state_engine(state_dir))
    for key in store.list():
        status = "revoked" if key.revoked_at else "active"
        typer.echo(f"{key.id}  {key.prefix}…  {status:8} {key.name}  [{', '.join(key.permissions)}]"
                   f"  models={','.join(key.models) if key.models else 'all'}"
                   f"  rate_limit={key.rate_limit or '-'}  budget={budget_text(key.budget)}"
                   f"  tenant={key.tenant_id}  user={key.user_id or '-'}"
                   f"  created={key.created_at:%Y-%m-%d %H:%M}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id, key_…")],
                state_dir: StateDirOption = None) -> None:
    """Revoke a key; it stops working at once."""
    from appliance.db.keys import KeyStore
    from appliance.tenancy.audit import AuditLog

    engine = state_engine(state_dir)
    store = KeyStore(engine)
    key = store.get(key_id)
    event = cli_event("api_key.delete", "api_key", key_id, key.tenant_id if key else None)
    with AuditLog(engine).change(event) as session:
        if not store.revoke(key_id, session):
            raise fail(f"no active key with id {key_id}")
    typer.echo(f"revoked {key_id}")
