"""`appliance models list|check|reload|import` and `appliance logs MODEL`: the catalogue and its engines."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.model_import import import_command
from appliance.cli.support import ConfigOption, StateDirOption, catalogue_of, cli_event, fail, settings_of, \
    state_engine

models_app = typer.Typer(help="The models catalogue.", no_args_is_help=True)
models_app.command("import")(import_command)


def logs(
    model: Annotated[str, typer.Argument(help="the model's slug (or an alias, with --config)")],
    config: ConfigOption = Path("models.toml"),
    state_dir: StateDirOption = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many of the last lines")] = 200,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing what the engine writes")] = False,
) -> None:
    """Show what a model's engine printed (STATE/logs/MODEL.log)."""
    import time

    from appliance.supervisor.engine_logs import log_path, tail

    settings = settings_of(config if config.exists() else None, state_dir)
    slug = model
    if config.exists():
        entry = catalogue_of(config, check_paths=False).get(model)
        slug = entry.slug if entry is not None else model
    directory = settings.state_dir / "logs"
    path = log_path(directory, slug)
    if not path.exists():
        known = sorted(p.name.removesuffix(".log") for p in directory.glob("*.log")) if directory.is_dir() else []
        raise fail(f"no log for model '{model}' in {directory}" + (f"; logs: {', '.join(known)}" if known else
                                                                    " (no model has started with this state dir)"))
    for line in tail(path, lines):
        typer.echo(line)
    if follow:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            while True:
                chunk = fh.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)


@models_app.command("list")
def models_list(config: ConfigOption = Path("models.toml")) -> None:
    """The models of the catalogue."""
    for entry in catalogue_of(config, check_paths=False):
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        typer.echo(f"{entry.slug:40} {entry.modality:13} {entry.engine:22} {entry.load:10} {entry.path or ', '.join(entry.url)}"
                   f"{aliases}")


@models_app.command("reload")
def models_reload(config: ConfigOption = Path("models.toml"), state_dir: StateDirOption = None) -> None:
    """Make the running appliance serve CONFIG as it is now: new models appear, removed ones drain and stop,
    changed ones restart; requests in flight finish. The same as SIGHUP or `systemctl reload appliance`."""
    import signal

    from appliance.gateway.app import PID_FILE

    catalogue_of(config)  # a broken catalogue is refused here, with its reason, before anything changes
    pid_file = settings_of(config, state_dir).state_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        raise fail(f"no running appliance found ({pid_file} names none); is it serving this state dir?") from None
    from appliance.tenancy.audit import AuditLog

    AuditLog(state_engine(state_dir, config)).record(cli_event("model.reload", "catalogue", str(config),
                                                               details={"pid": pid}))
    typer.echo(f"asked the appliance (pid {pid}) to reload {config}; GET /v1/models shows the result")


@models_app.command("check")
def models_check(config: ConfigOption = Path("models.toml"), state_dir: StateDirOption = None) -> None:
    """Validate the catalogue: paths exist, engines installed, sizes sane. Exit 1 on any problem."""
    from appliance.supervisor.launch import engine_installed

    settings = settings_of(config, state_dir)
    catalogue = catalogue_of(config, check_paths=False)
    problems = 0
    for entry in catalogue:
        issues = []
        if entry.path is not None and not entry.path.exists():
            issues.append(f"path {entry.path} does not exist")
        if not engine_installed(entry):
            issues.append(f"engine '{entry.engine}' is not installed for {entry.python or sys.executable}")
        if settings.gpu_memory_gb is not None and entry.gpu_memory_gb > settings.gpu_memory_gb:
            issues.append(f"gpu_memory_gb {entry.gpu_memory_gb:g} exceeds the box's {settings.gpu_memory_gb:g}")
        problems += bool(issues)
        typer.echo(f"{'ok ' if not issues else 'BAD'} {entry.slug}" + "".join(f"\n    - {i}" for i in issues))
    startup_gb = sum(e.gpu_memory_gb for e in catalogue if e.load == "startup")
    if settings.gpu_memory_gb is not None and startup_gb > settings.gpu_memory_gb:
        problems += 1
        typer.echo(f"BAD startup models need {startup_gb:g} GB of GPU memory; the box has {settings.gpu_memory_gb:g}")
    typer.echo(f"{len(catalogue)} model(s), {problems} with problems")
    if problems:
        raise typer.Exit(code=1)
