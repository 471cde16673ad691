"""What every `appliance` sub-command shares: the common options, settings and catalogue loading, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.catalogue import Catalogue, CatalogueError, load_catalogue
from appliance.config import Settings, load_settings

ConfigOption = Annotated[Path, typer.Option("--config", "-c", envvar="APPLIANCE_CONFIG",
                                            help="models.toml: the catalogue, with an optional [settings] table")]
StateDirOption = Annotated[Path | None, typer.Option("--state-dir", envvar="APPLIANCE_STATE_DIR",
                                                     help="keys DB, sockets, media; default /var/lib/appliance")]


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; raise what this returns to exit with status 1."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


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
