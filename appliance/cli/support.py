"""What every `appliance` sub-command shares: the common options, settings and catalogue loading, failures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from appliance.catalogue import Catalogue, CatalogueError, load_catalogue
from appliance.config import Settings, load_settings

if TYPE_CHECKING:  # the DB's modules load sqlalchemy: only the commands that use it import them
    from sqlalchemy import Engine

    from appliance.db.health import DatabaseProblem
    from appliance.db.keys import Budget
    from appliance.tenancy.audit import AuditEvent

ConfigOption = Annotated[Path, typer.Option("--config", "-c", envvar="APPLIANCE_CONFIG",
                                            help="models.toml: the catalogue, with an optional [settings] table")]
StateDirOption = Annotated[Path | None, typer.Option("--state-dir", envvar="APPLIANCE_STATE_DIR",
                                                     help="keys DB, sockets, media; default /var/lib/appliance")]


# The exit status of a start that only the operator can mend (a damaged state DB, an unsafe socket directory):
# the unit's RestartPreventExitStatus, so systemd does not restart into the same failure in a loop.
EXIT_NEEDS_OPERATOR = 78  # EX_CONFIG


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with ``code``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=code)


def database_fail(problem: DatabaseProblem) -> typer.Exit:
    return fail(problem.message, EXIT_NEEDS_OPERATOR if problem.lasting else 1)


def open_state_database(url: str) -> Engine:
    """The state DB, or an exit with the sentence saying what is wrong with it (no traceback)."""
    from appliance.db.database import open_database
    from appliance.db.health import DatabaseProblem

    try:
        return open_database(url)
    except DatabaseProblem as exc:
        raise database_fail(exc) from None


def settings_of(config: Path | None, state_dir: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, state_dir=state_dir, **overrides)
    except Exception as exc:  # pydantic's message names the setting
        raise fail(f"bad settings: {exc}") from None


def catalogue_of(config: Path, check_paths: bool = True) -> Catalogue:
    try:
        return load_catalogue(config, check_paths=check_paths)
    except CatalogueError as exc:
        raise fail(str(exc)) from None


def state_engine(state_dir: Path | None, config: Path | None = None) -> Engine:
    """The state DB of ``state_dir`` (or of ``database_url``), migrated; or an exit saying what is wrong with it."""
    return open_state_database(settings_of(config if config is not None and config.exists() else None,
                                           state_dir).effective_database_url)


def cli_event(action: str, resource_type: str | None, resource_id: str | None = None, tenant_id: str | None = None,
              details: dict[str, object] | None = None) -> AuditEvent:
    """The audit event of an operator's command: the actor is the CLI, run by the machine's user named in it."""
    from appliance.tenancy.audit import AuditEvent

    return AuditEvent(action=action, actor_type="service", actor_id="cli", tenant_id=tenant_id,
                      resource_type=resource_type, resource_id=resource_id, user_agent="appliance-cli",
                      details={"os_user": _os_user(), **(details or {})})


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for the uid (a container)
        import os

        return str(os.getuid())


BudgetPeriodOption = Annotated[str, typer.Option(help="day, week, month or total")]
# The limits a tenant and a user share (a key's are its own: cli/keys.py).
StatusOption = Annotated[str | None, typer.Option(help="active or suspended")]
RateOption = Annotated[int | None, typer.Option(help="requests per minute")]
NoRateOption = Annotated[bool, typer.Option("--no-rate-limit", help="lift the rate limit")]
TokensOption = Annotated[int | None, typer.Option(help="tokens per budget period")]
ImagesOption = Annotated[int | None, typer.Option(help="images per budget period")]
AudioOption = Annotated[float | None, typer.Option(help="audio seconds per budget period")]
CostOption = Annotated[float | None, typer.Option(help="cost per budget period, at the catalogue's prices")]
NoBudgetOption = Annotated[bool, typer.Option("--no-budget", help="lift the budget")]


def budget_of(period: str, tokens: int | None, images: int | None, audio_seconds: float | None,
              cost: float | None) -> Budget | None:
    """A budget from the --budget-* options; None when no unit is limited."""
    from appliance.db.keys import Budget

    if tokens is None and images is None and audio_seconds is None and cost is None:
        return None
    return Budget(period, tokens, images, audio_seconds, cost)


def checked_rate(rate_limit: int | None) -> int | None:
    if rate_limit is not None and rate_limit <= 0:
        raise ValueError("--rate-limit must be a positive number of requests per minute")
    return rate_limit


def limit_changes(status: str | None, rate_limit: int | None, no_rate_limit: bool, budget: Budget | None,
                  no_budget: bool) -> dict[str, object]:
    """What `tenants set` and `users set` change of the limits they share (ValueError: a bad option)."""
    from appliance.tenancy.store import STATUSES

    changes: dict[str, object] = {}
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"--status must be one of {', '.join(STATUSES)}")
        changes["status"] = status
    if rate_limit is not None or no_rate_limit:
        changes["rate_limit"] = None if no_rate_limit else checked_rate(rate_limit)
    if budget is not None or no_budget:
        changes["budget"] = None if no_budget else budget
    return changes


def budget_text(budget: object) -> str:
    from appliance.db.keys import Budget

    if not isinstance(budget, Budget):
        return "none"
    limits = ", ".join(f"{value:g} {unit.replace('_', ' ')}" for unit, value in budget.limits().items())
    return f"{limits} per {budget.period}" if budget.period != "total" else f"{limits} in total"
