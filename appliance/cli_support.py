"""What every `appliance` sub-command shares: how a failure is told."""

from __future__ import annotations

import typer


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with status 1."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)
