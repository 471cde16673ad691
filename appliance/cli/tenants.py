"""`appliance tenants create|list|set|delete`: the box's tenants, straight in the state DB (audited as the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from appliance.cli.support import (AudioOption, BudgetPeriodOption, CostOption, ImagesOption, NoBudgetOption,
                                   NoRateOption, RateOption, StateDirOption, StatusOption, TokensOption, budget_of,
                                   budget_text, checked_rate, cli_event, fail, limit_changes, state_engine)

if TYPE_CHECKING:
    from appliance.tenancy.store import Tenant

tenants_app = typer.Typer(help="Tenants: create, list, change, delete.", no_args_is_help=True)

ModelOption = Annotated[list[str] | None, typer.Option("--model", "-m", help="repeatable; default every model")]
WeightOption = Annotated[float | None, typer.Option(
    help="its share of a full model among the tenants waiting (default 1: equal shares; docs/fair-share.md)")]
MinimumOption = Annotated[int | None, typer.Option(
    help="requests of it a full model runs before others beyond their own minimum (capped at each model's capacity)")]
MAX_WEIGHT = 1000  # as the API's (protocol/tenancy.py Share)


def share_of(weight: float | None, minimum: int | None) -> dict[str, Any]:
    """The share columns to set; a weight of 0 or below, or a negative minimum, is refused naming the option."""
    changes: dict[str, Any] = {}
    if weight is not None:
        if not 0 < weight <= MAX_WEIGHT:
            raise ValueError(f"--share-weight must be above 0 and at most {MAX_WEIGHT}")
        changes["share_weight"] = weight
    if minimum is not None:
        if minimum < 0:
            raise ValueError("--min-concurrency must be 0 or more")
        changes["min_concurrency"] = minimum
    return changes


def _show(tenant: Tenant) -> str:
    models = ",".join(tenant.models) if tenant.models is not None else "all"
    return (f"{tenant.id}  {tenant.status:9} {tenant.name}  models={models}  "
            f"rate_limit={tenant.rate_limit or '-'}  budget={budget_text(tenant.budget)}  "
            f"share={tenant.share_weight:g} min_concurrency={tenant.min_concurrency}")


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="a department, project or team; unique")],
    model: ModelOption = None, rate_limit: RateOption = None, budget_tokens: TokensOption = None,
    budget_images: ImagesOption = None, budget_audio_seconds: AudioOption = None, budget_cost: CostOption = None,
    budget_period: BudgetPeriodOption = "month", share_weight: WeightOption = None,
    min_concurrency: MinimumOption = None, state_dir: StateDirOption = None,
) -> None:
    """Create a tenant; its id is printed alone on the last line."""
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import TenantStore

    engine = state_engine(state_dir)
    store = TenantStore(engine)
    try:
        budget = budget_of(budget_period, budget_tokens, budget_images, budget_audio_seconds, budget_cost)
        checked_rate(rate_limit)
        share = share_of(share_weight, min_concurrency)
    except ValueError as exc:
        raise fail(str(exc)) from None
    event = cli_event("tenant.create", "tenant", details={"name": name})
    with AuditLog(engine).change(event) as session:
        if store.named(name, session) is not None:
            raise fail(f"a tenant named '{name}' already exists")
        tenant = store.create(name, model, rate_limit, budget, session=session, **share)
        event.resource_id = event.tenant_id = tenant.id
    typer.echo(f"created {_show(tenant)}")
    typer.echo(tenant.id)


@tenants_app.command("list")
def tenants_list(state_dir: StateDirOption = None) -> None:
    """Every tenant that is not deleted."""
    from appliance.tenancy.store import TenantStore

    for tenant in TenantStore(state_engine(state_dir)).list(limit=100_000):
        typer.echo(_show(tenant))


@tenants_app.command("set")
def tenants_set(
    tenant_id: Annotated[str, typer.Argument(help="the tenant's id, ten_…")],
    name: Annotated[str | None, typer.Option(help="a new name")] = None,
    status: StatusOption = None,
    model: ModelOption = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="lift the model allow-list")] = False,
    rate_limit: RateOption = None, no_rate_limit: NoRateOption = False,
    budget_tokens: TokensOption = None, budget_images: ImagesOption = None,
    budget_audio_seconds: AudioOption = None, budget_cost: CostOption = None,
    budget_period: BudgetPeriodOption = "month", no_budget: NoBudgetOption = False,
    share_weight: WeightOption = None, min_concurrency: MinimumOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Change a tenant: only what is given changes."""
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import TenantStore

    try:
        budget = budget_of(budget_period, budget_tokens, budget_images, budget_audio_seconds, budget_cost)
        changes = limit_changes(status, rate_limit, no_rate_limit, budget, no_budget)
        changes.update(share_of(share_weight, min_concurrency))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if name is not None:
        changes["name"] = name
    if model or all_models:
        changes["models"] = None if all_models else model
    if not changes:
        raise fail("nothing to change; see --help")
    engine = state_engine(state_dir)
    store = TenantStore(engine)
    event = cli_event("tenant.update", "tenant", tenant_id, tenant_id, {"changes": sorted(changes)})
    with AuditLog(engine).change(event) as session:
        updated = store.update(tenant_id, session, **changes)
        if updated is None:
            raise fail(f"no tenant with id {tenant_id}")
    typer.echo(f"changed {_show(updated)}")


@tenants_app.command("delete")
def tenants_delete(tenant_id: Annotated[str, typer.Argument(help="the tenant's id, ten_…")],
                   state_dir: StateDirOption = None) -> None:
    """Delete a tenant: its users are deleted and every key of it is revoked at once."""
    from appliance.db.keys import KeyStore
    from appliance.db.tables import DEFAULT_TENANT_ID
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import TenantStore

    if tenant_id == DEFAULT_TENANT_ID:
        raise fail("the default tenant holds the box's first admin and cannot be deleted")
    engine = state_engine(state_dir)
    event = cli_event("tenant.delete", "tenant", tenant_id, tenant_id)
    with AuditLog(engine).change(event) as session:
        if not TenantStore(engine).delete(tenant_id, session):
            raise fail(f"no tenant with id {tenant_id}")
        revoked = KeyStore(engine).revoke_all(session, tenant_id=tenant_id)
        event.details = {**(event.details or {}), "keys_revoked": revoked}
    typer.echo(f"deleted {tenant_id}; {revoked} key(s) revoked")
