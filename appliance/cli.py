"""`appliance …`: serve, demo, tiny-models, keys, models (list, check, import, reload), bundle, batches."""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from appliance.bundle.cli import bundle_app
from appliance.batch.cli import batches_app
from appliance.catalogue import Catalogue, CatalogueError, load_catalogue
from appliance.cli_support import fail as _fail
from appliance.config import Settings, load_settings
from appliance.model_import_cli import import_command
from appliance.state_dir import prepare_state_dir

app = typer.Typer(help="The inference appliance: the ScaiGrid inference API on this box.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
GROUPS = ("model", "key", "backend")
SUMMARY_PERIODS = ("hour", "day", "week", "month", "total")
models_app = typer.Typer(help="The models catalogue.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(bundle_app, name="bundle")
models_app.command("import")(import_command)
app.add_typer(batches_app, name="batches")

ConfigOption = Annotated[Path, typer.Option("--config", "-c", envvar="APPLIANCE_CONFIG",
                                            help="models.toml: the catalogue, with an optional [settings] table")]
StateDirOption = Annotated[Path | None, typer.Option("--state-dir", envvar="APPLIANCE_STATE_DIR",
                                                     help="keys DB, sockets, media; default /var/lib/appliance")]


def _settings(config: Path | None, state_dir: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, state_dir=state_dir, **overrides)
    except Exception as exc:  # pydantic's message names the setting
        raise _fail(f"bad settings: {exc}") from None


def _catalogue(config: Path, check_paths: bool = True) -> Catalogue:
    try:
        return load_catalogue(config, check_paths=check_paths)
    except CatalogueError as exc:
        raise _fail(str(exc)) from None


def _serve(settings: Settings, catalogue: Catalogue, banner: str | None = None) -> None:
    import uvicorn

    from appliance.gateway.app import create_gateway
    from appliance.gateway.http_limits import BoundedHttpProtocol

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at each start
    for warning in prepare_state_dir(settings.state_dir):
        logging.getLogger("appliance").warning("%s", warning)
    gateway = create_gateway(settings, catalogue)
    config = uvicorn.Config(gateway, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, http=BoundedHttpProtocol, timeout_graceful_shutdown=int(settings.drain_timeout_s) or None)
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.get_running_loop().create_task(server.serve())
        if banner is not None:
            fastapi_app = gateway.app  # type: ignore[attr-defined]
            while not server.started and not task.done():
                await asyncio.sleep(0.05)
            if await_ready := not task.done():
                await fastapi_app.state.supervisor.wait_startup_models()
            if await_ready and not task.done():
                print(banner, flush=True)
        await task

    # uvicorn's own choice of loop (uvloop when installed): asyncio.run would give the stock loop, whose
    # transports cost the relay about a fifth more CPU per request.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
    if not server.started:
        raise typer.Exit(code=1)


@app.command()
def serve(
    config: ConfigOption = Path("models.toml"),
    state_dir: StateDirOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Serve the API for the models of CONFIG (under systemd: Type=notify)."""
    settings = _settings(config, state_dir, host=host, port=port)
    _serve(settings, _catalogue(config))


@app.command("tiny-models")
def tiny_models(
    out_dir: Annotated[Path, typer.Argument(help="where to build them; DIR/models.toml lists them")],
    force: Annotated[bool, typer.Option(help="rebuild even those already built")] = False,
) -> None:
    """Build the tiny random-weight model of every engine, offline, and write DIR/models.toml."""
    from appliance.tiny_models import build_all

    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    catalogue = build_all(out_dir, force=force)
    typer.echo(str(catalogue))


@app.command()
def demo(
    state_dir: StateDirOption = None,
    port: Annotated[int, typer.Option(help="port to listen on (127.0.0.1 only)")] = 8080,
    models_dir: Annotated[Path | None, typer.Option(help="where the tiny models are built; "
                                                         "default STATE_DIR/tiny-models")] = None,
) -> None:
    """Tiny CPU models, a fresh API key, and the appliance on 127.0.0.1:PORT."""
    from appliance.db.database import open_database
    from appliance.db.keys import PERMISSIONS, KeyStore
    from appliance.tiny_models import build_all

    state = (state_dir or Path(".cache/demo")).resolve()
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    models_dir = models_dir or state / "tiny-models"
    typer.echo(f"building tiny models in {models_dir} (once; later runs reuse them) …")
    catalogue_path = build_all(models_dir)
    settings = _settings(catalogue_path, state, host="127.0.0.1", port=port)
    catalogue = _catalogue(catalogue_path)
    # The operator's key: it may also make keys (with budgets) over the API and read everyone's usage.
    _key, secret = KeyStore(open_database(settings.effective_database_url)).create("demo", list(PERMISSIONS))
    banner = "\n".join([
        "", f"The appliance is ready on http://127.0.0.1:{port} with {len(catalogue)} tiny model(s).",
        f"API key: {secret}", f"Console: http://127.0.0.1:{port}/console/ (paste the API key to log in)",
        "Try:", *_demo_examples(catalogue, port, secret), "Stop with Ctrl-C.", "",
    ])
    _serve(settings, catalogue, banner=banner)


# One example per modality the demo serves: (modality, route, body, curl options after the body).
DEMO_EXAMPLES = [
    ("embedding", "/v1/inference/embed",
     {"model": "openai/text-embedding-3-small", "input": ["first text", "second text"], "dimensions": 1536}, ""),
    ("chat", "/v1/inference/chat",
     {"model": "scailabs/poolnoodle-omni", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32,
      "stream": True}, " -N"),
    ("image", "/v1/inference/images/generate",
     {"model": "openai/dall-e-3", "prompt": "A cozy reading nook", "size": "1024x1024", "n": 1}, ""),
    ("speech", "/v1/inference/audio/synthesize",
     {"model": "openai/tts-1", "input": "Hello world", "voice": "alloy", "response_format": "mp3"},
     " -o hello.mp3"),
]


# A key with a 100-token daily budget: spend it with the chat line, then see /v1/accounting/usage/summary.
KEY_EXAMPLE = ("", "/v1/api-keys", {"name": "budgeted", "budget": {"period": "day", "tokens": 100}}, "")


def _demo_examples(catalogue: Catalogue, port: int, secret: str) -> list[str]:
    import json

    lines = []
    def served(modality: str, body: dict[str, object]) -> bool:
        entry = catalogue.get(str(body["model"]))
        return entry is not None and entry.modality == modality

    examples = [example for example in DEMO_EXAMPLES if served(example[0], example[2])]
    for _modality, route, body, extra in [*examples, KEY_EXAMPLE]:
        lines.append(f"  curl -s http://127.0.0.1:{port}{route} -H {shlex.quote('Authorization: Bearer ' + secret)} "
                     f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}{extra}")
    return lines


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

    from appliance.db.database import open_database
    from appliance.db.keys import Budget, KeyStore

    store = KeyStore(open_database(_settings(None, state_dir).effective_database_url))
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
        raise _fail(str(exc)) from None
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
    from appliance.db.database import open_database
    from appliance.db.keys import KeyStore

    store = KeyStore(open_database(_settings(None, state_dir).effective_database_url))
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
    from appliance.db.database import open_database
    from appliance.db.keys import KeyStore

    store = KeyStore(open_database(_settings(None, state_dir).effective_database_url))
    if not store.revoke(key_id):
        raise _fail(f"no active key with id {key_id}")
    typer.echo(f"revoked {key_id}")


@app.command()
def usage(
    group_by: Annotated[str, typer.Option(help="model, key or backend")] = "model",
    period: Annotated[str, typer.Option(help="hour, day, week, month or total: from the start of the current one")]
    = "day",
    key: Annotated[str | None, typer.Option(help="only this key's usage (its id, key_…)")] = None,
    state_dir: StateDirOption = None,
) -> None:
    """Usage summed by model, key or backend: the numbers of GET /v1/accounting/usage/summary."""
    from datetime import UTC, datetime

    from appliance.accounting.periods import period_start
    from appliance.accounting.store import UsageFilter, UsageStore
    from appliance.db.database import open_database

    if group_by not in GROUPS:
        raise _fail(f"--group-by must be one of {', '.join(GROUPS)}")
    if period not in SUMMARY_PERIODS:
        raise _fail(f"--period must be one of {', '.join(SUMMARY_PERIODS)}")
    store = UsageStore(open_database(_settings(None, state_dir).effective_database_url))
    start = period_start(period, datetime.now(UTC))
    rows = store.summary(UsageFilter(start=start, key_id=key), group_by)
    since = f"since {start:%Y-%m-%d %H:%M} UTC" if start else "in total"
    typer.echo(f"usage by {group_by}, {since}")
    typer.echo(f"{group_by:40} {'requests':>8} {'in tok':>9} {'out tok':>9} {'total tok':>10} {'images':>7} "
               f"{'audio s':>9} {'chars':>8}")
    for row in rows:
        typer.echo(f"{str(row['group_key'] or '-'):40} {row['request_count']:>8} {row['input_tokens']:>9} "
                   f"{row['output_tokens']:>9} {row['total_tokens']:>10} {row['images']:>7} "
                   f"{row['audio_seconds']:>9.1f} {row['characters']:>8}")


@app.command()
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

    settings = _settings(config if config.exists() else None, state_dir)
    slug = model
    if config.exists():
        entry = _catalogue(config, check_paths=False).get(model)
        slug = entry.slug if entry is not None else model
    directory = settings.state_dir / "logs"
    path = log_path(directory, slug)
    if not path.exists():
        known = sorted(p.name.removesuffix(".log") for p in directory.glob("*.log")) if directory.is_dir() else []
        raise _fail(f"no log for model '{model}' in {directory}" + (f"; logs: {', '.join(known)}" if known else
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
    for entry in _catalogue(config, check_paths=False):
        aliases = f" (aliases: {', '.join(entry.aliases)})" if entry.aliases else ""
        typer.echo(f"{entry.slug:40} {entry.modality:13} {entry.engine:22} {entry.load:10} {entry.path or ', '.join(entry.url)}"
                   f"{aliases}")


@models_app.command("reload")
def models_reload(config: ConfigOption = Path("models.toml"), state_dir: StateDirOption = None) -> None:
    """Make the running appliance serve CONFIG as it is now: new models appear, removed ones drain and stop,
    changed ones restart; requests in flight finish. The same as SIGHUP or `systemctl reload appliance`."""
    import signal

    from appliance.gateway.app import PID_FILE

    _catalogue(config)  # a broken catalogue is refused here, with its reason, before anything changes
    pid_file = _settings(config, state_dir).state_dir / PID_FILE
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        raise _fail(f"no running appliance found ({pid_file} names none); is it serving this state dir?") from None
    typer.echo(f"asked the appliance (pid {pid}) to reload {config}; GET /v1/models shows the result")


@models_app.command("check")
def models_check(config: ConfigOption = Path("models.toml"), state_dir: StateDirOption = None) -> None:
    """Validate the catalogue: paths exist, engines installed, sizes sane. Exit 1 on any problem."""
    from appliance.supervisor.launch import engine_installed

    settings = _settings(config, state_dir)
    catalogue = _catalogue(config, check_paths=False)
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


if __name__ == "__main__":
    app()
