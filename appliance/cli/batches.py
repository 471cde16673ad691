"""`appliance batches list|show|cancel`: the operator's view of every key's batches, straight from the state DB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.support import StateDirOption, open_state_database, settings_of

batches_app = typer.Typer(help="Batches: list, show, cancel (every key's).", no_args_is_help=True)


def _store(state_dir: Path | None):  # type: ignore[no-untyped-def]
    from appliance.batch.store import BatchStore

    return BatchStore(open_state_database(settings_of(None, state_dir).effective_database_url))


def _counts(store, batch_id: str) -> str:  # type: ignore[no-untyped-def]
    counts = store.counts(batch_id)
    return " ".join(f"{state}={counts[state]}" for state in sorted(counts)) or "no lines"


@batches_app.command("list")
def batches_list(status: Annotated[str | None, typer.Option(help="only batches in this status")] = None,
                 limit: Annotated[int, typer.Option(help="how many, newest first")] = 50,
                 state_dir: StateDirOption = None) -> None:
    """The newest batches of every key, with their lines' states."""
    store = _store(state_dir)
    for batch in store.list(None, status, None, limit):
        typer.echo(f"{batch.id}  {batch.status:11} key={batch.key_id}  {batch.surface:8} total={batch.total}  "
                   f"{_counts(store, batch.id)}  created={batch.created_at:%Y-%m-%d %H:%M}")


@batches_app.command("show")
def batches_show(batch_id: Annotated[str, typer.Argument(help="the batch's id, batch_…")],
                 state_dir: StateDirOption = None) -> None:
    """One batch, in full."""
    store = _store(state_dir)
    batch = store.get(batch_id, None)
    if batch is None:
        typer.secho(f"error: no batch {batch_id}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)
    fields = {name: getattr(batch, name) for name in (
        "id", "status", "key_id", "surface", "endpoint", "completion_window", "total", "input_file_id",
        "output_file_id", "error_file_id", "created_at", "expires_at", "completed_at", "failed_at",
        "cancelled_at", "expired_at")}
    fields["metadata"], fields["errors"], fields["lines"] = batch.metadata_, batch.errors, store.counts(batch_id)
    typer.echo(json.dumps(fields, indent=2, default=str))


@batches_app.command("cancel")
def batches_cancel(batch_id: Annotated[str, typer.Argument(help="the batch's id, batch_…")],
                   state_dir: StateDirOption = None) -> None:
    """Stop a batch dispatching; lines in flight finish, what completed is kept."""
    store = _store(state_dir)
    batch = store.get(batch_id, None)
    if batch is None or not store.cancel(batch_id):
        why = "no such batch" if batch is None else f"it is already {batch.status}"
        typer.secho(f"error: cannot cancel {batch_id}: {why}", err=True, fg=typer.colors.RED)
        raise typer.Exit(code=1)
    typer.echo(f"cancelling {batch_id}")
