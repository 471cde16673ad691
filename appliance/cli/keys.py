"""`appliance keys create|list|revoke`: API keys, straight in the state DB (the operator's side of /v1/api-keys)."""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, fail, open_state_database, settings_of

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
    budget_period: Annotated[str, typer.Option(help="day, week, month or total")] = "day",
    expires: Annotated[str | None, typer.Option(help="ISO 8601 time the key stops working; default never")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Create a key; the secret is printed once, alone on the last line."""
    from datetime import UTC, datetime

    from appliance.db.keys import Budget, KeyStore

    store = KeyStore(open_state_database(settings_of(None, state_dir).effective_database_url))
    try:
        budget = None
        if budget_tokens is not None or budget_images is not None or budget_audio_seconds is not None:
            budget = Budget(budget_period, budget_tokens, budget_images, budget_audio_seconds)
        expires_at = datetime.fromisoformat(expires) if expires else None
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise ValueError(f"--expires {expires} is in the past")
        key, secret = store.create(name, permission, model, rate_limit, expires_at, budget)
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {key.id} ({key.name}): permissions {', '.join(key.permissions)}; "
               f"models {', '.join(key.models) if key.models else 'all'}; "
               f"rate limit {f'{key.rate_limit}/min' if key.rate_limit else 'none'}; "
               f"budget {_budget_text(key.budget)}. The key is shown only now:")
    typer.echo(secret)


def _budget_text(budget: object) -> str:
    from appliance.db.keys import Budget

    if not isinstance(budget, Budget):
        return "none"
    limits = ", ".join(f"{value:g} {unit.replace('_', ' ')}" for unit, value in budget.limits().items())
    return f"{limits} per {budget.period}" if budget.period != "total" else f"{limits} in total"


@keys_app.command("list")
def keys_list(state_dir: StateDirOption = None) -> None:
    """Every key, without its secret."""
    from appliance.db.keys import KeyStore

    store = KeyStore(open_state_database(settings_of(None, state_dir).effective_database_url))
    for key in store.list():
        status = "revoked" if key.revoked_at else "active"
        typer.echo(f"{key.id}  {key.prefix}…  {status:8} {key.name}  [{', '.join(key.permissions)}]"
                   f"  models={','.join(key.models) if key.models else 'all'}"
                   f"  rate_limit={key.rate_limit or '-'}  budget={_budget_text(key.budget)}"
                   f"  created={key.created_at:%Y-%m-%d %H:%M}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id, key_…")],
                state_dir: StateDirOption = None) -> None:
    """Revoke a key; it stops working at once."""
    from appliance.db.keys import KeyStore

    store = KeyStore(open_state_database(settings_of(None, state_dir).effective_database_url))
    if not store.revoke(key_id):
        raise fail(f"no active key with id {key_id}")
    typer.echo(f"revoked {key_id}")
