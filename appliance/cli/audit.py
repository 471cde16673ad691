"""`appliance audit verify|list`: check the audit log's hash chain, and read the latest events."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, state_engine

audit_app = typer.Typer(help="The audit log: verify its chain, list events.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(state_dir: StateDirOption = None) -> None:
    """Walk the hash chain from the first event; exit 1 naming the first event edited, deleted or moved."""
    from appliance.tenancy.audit import AuditLog, verify

    verdict = verify(AuditLog(state_engine(state_dir)))
    if verdict.intact:
        typer.echo(f"ok: {verdict.checked} audit event(s), the chain is intact")
        return
    where = f"event #{verdict.bad_seq}" + (f" ({verdict.bad_id})" if verdict.bad_id else "")
    typer.secho(f"TAMPERED: {where}: {verdict.problem}; the {verdict.checked} event(s) before it are intact",
                err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


@audit_app.command("list")
def audit_list(
    limit: Annotated[int, typer.Option(help="how many of the latest events")] = 50,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's events")] = None,
    action: Annotated[str | None, typer.Option(help="only this action, e.g. api_key.create")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """The latest events, newest first."""
    from appliance.tenancy.audit import AuditFilter, AuditLog

    rows, _next = AuditLog(state_engine(state_dir)).page(AuditFilter(tenant_id=tenant, action=action), limit)
    for row in rows:
        actor = row.actor_email or row.actor_id or "-"
        typer.echo(f"{row.timestamp:%Y-%m-%d %H:%M:%S}  {row.status:7} {row.action:18} {actor:28} "
                   f"{row.resource_type or '-'}:{row.resource_id or '-'}  tenant={row.tenant_id or '-'}  "
                   f"ip={row.ip_address or '-'}  {row.id}")
