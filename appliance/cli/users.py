"""`appliance users create|list|roles|set|delete`: users of the tenants, straight in the state DB (audited)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from appliance.cli.support import (AudioOption, BudgetPeriodOption, CostOption, ImagesOption, NoBudgetOption,
                                   NoRateOption, RateOption, StateDirOption, StatusOption, TokensOption, budget_of,
                                   budget_text, cli_event, fail, limit_changes, state_engine)

if TYPE_CHECKING:
    from appliance.tenancy.store import User

users_app = typer.Typer(help="Users: create, list, set roles, change, delete.", no_args_is_help=True)

RoleOption = Annotated[list[str] | None, typer.Option("--role", "-r", help="repeatable: tenant_viewer, tenant_user, "
                                                                          "tenant_admin or box_admin")]


def _show(user: User) -> str:
    return (f"{user.id}  {user.status:9} {user.email}  tenant={user.tenant_id}  roles={','.join(user.roles)}  "
            f"rate_limit={user.rate_limit or '-'}  budget={budget_text(user.budget)}")


def _roles(role: list[str] | None) -> list[str]:
    from appliance.tenancy.roles import ROLES, unknown_roles

    roles = list(dict.fromkeys(role or ["tenant_user"]))
    unknown = unknown_roles(roles)
    if unknown:
        raise fail(f"unknown role '{unknown[0]}'; known: {', '.join(ROLES)}")
    return roles


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Argument(help="the user's email: unique in their tenant")],
    tenant: Annotated[str, typer.Option(help="the tenant's id, ten_… (default the default tenant)")] = "ten_default",
    name: Annotated[str | None, typer.Option(help="a display name")] = None,
    role: RoleOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a user; their id is printed alone on the last line (`appliance keys create NAME --user ID`)."""
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import TenantStore, UserStore

    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise fail(f"'{email}' is not an email address")
    roles = _roles(role)
    engine = state_engine(state_dir)
    store = UserStore(engine)
    event = cli_event("user.create", "user", tenant_id=tenant, details={"email": email, "roles": roles})
    with AuditLog(engine).change(event) as session:
        if TenantStore(engine).get(tenant, session) is None:
            raise fail(f"no tenant with id {tenant}")
        if store.with_email(tenant, email, session) is not None:
            raise fail(f"the tenant already has a user with the email {email}")
        user = store.create(tenant, email, name, roles, session)
        event.resource_id = user.id
    typer.echo(f"created {_show(user)}")
    typer.echo(user.id)


@users_app.command("list")
def users_list(tenant: Annotated[str | None, typer.Option(help="only this tenant's users")] = None,
               state_dir: StateDirOption = None) -> None:
    """Every user that is not deleted (of one tenant, with --tenant)."""
    from appliance.tenancy.store import UserStore

    for user in UserStore(state_engine(state_dir)).list(tenant, limit=100_000):
        typer.echo(_show(user))


def _change(user_id: str, action: str, state_dir: object, **changes: object) -> None:
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import UserStore

    engine = state_engine(state_dir)  # type: ignore[arg-type]
    store = UserStore(engine)
    current = store.get(user_id)
    if current is None:
        raise fail(f"no user with id {user_id}")
    event = cli_event(action, "user", user_id, current.tenant_id, {"changes": sorted(changes)})
    with AuditLog(engine).change(event) as session:
        updated = store.update(user_id, session, **changes)
    typer.echo(f"changed {_show(updated)}")


@users_app.command("roles")
def users_roles(user_id: Annotated[str, typer.Argument(help="the user's id, usr_…")], role: RoleOption = None,
                state_dir: StateDirOption = None) -> None:
    """Set a user's roles (replacing the ones they had)."""
    if not role:
        raise fail("give at least one --role")
    _change(user_id, "user.role_update", state_dir, roles=_roles(role))


@users_app.command("set")
def users_set(
    user_id: Annotated[str, typer.Argument(help="the user's id, usr_…")],
    name: Annotated[str | None, typer.Option(help="a new display name")] = None,
    status: StatusOption = None,
    rate_limit: RateOption = None, no_rate_limit: NoRateOption = False,
    budget_tokens: TokensOption = None, budget_images: ImagesOption = None,
    budget_audio_seconds: AudioOption = None, budget_cost: CostOption = None,
    budget_period: BudgetPeriodOption = "month", no_budget: NoBudgetOption = False,
    state_dir: StateDirOption = None,
) -> None:
    """Change a user: only what is given changes."""
    try:
        budget = budget_of(budget_period, budget_tokens, budget_images, budget_audio_seconds, budget_cost)
        changes = limit_changes(status, rate_limit, no_rate_limit, budget, no_budget)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if name is not None:
        changes["display_name"] = name
    if not changes:
        raise fail("nothing to change; see --help")
    _change(user_id, "user.update", state_dir, **changes)


@users_app.command("delete")
def users_delete(user_id: Annotated[str, typer.Argument(help="the user's id, usr_…")],
                 state_dir: StateDirOption = None) -> None:
    """Delete a user: every key of theirs is revoked at once."""
    from appliance.db.keys import KeyStore
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import UserStore

    engine = state_engine(state_dir)
    store = UserStore(engine)
    current = store.get(user_id)
    if current is None:
        raise fail(f"no user with id {user_id}")
    event = cli_event("user.delete", "user", user_id, current.tenant_id)
    with AuditLog(engine).change(event) as session:
        store.delete(user_id, session)
        revoked = KeyStore(engine).revoke_all(session, user_id=user_id)
        event.details = {**(event.details or {}), "keys_revoked": revoked}
    typer.echo(f"deleted {user_id}; {revoked} key(s) revoked")
