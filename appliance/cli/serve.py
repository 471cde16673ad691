"""`appliance serve`, `demo` and `tiny-models`: the gateway under uvicorn, on a catalogue or on the tiny models."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from appliance.catalogue import Catalogue
from appliance.cli.support import ConfigOption, StateDirOption, catalogue_of, settings_of
from appliance.config import Settings
from appliance.state_dir import prepare_state_dir



def _serve(settings: Settings, catalogue: Catalogue, banner: str | None = None) -> None:
    import uvicorn

    from appliance.gateway.app import create_gateway
    from appliance.gateway.http_limits import BoundedHttpProtocol
    from appliance.gateway.openai_at_v1 import OpenAIAtV1, OpenAIHttpProtocol

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at each start
    for warning in prepare_state_dir(settings.state_dir):
        logging.getLogger("appliance").warning("%s", warning)
    gateway = create_gateway(settings, catalogue)
    grace = int(settings.drain_timeout_s) or None
    main_app = OpenAIAtV1(gateway, settings.openai_hosts) if settings.openai_hosts else gateway
    config = uvicorn.Config(main_app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, http=BoundedHttpProtocol, timeout_graceful_shutdown=grace)
    server = uvicorn.Server(config)
    # The OpenAI layer at /v1 on a port of its own: the same app (its lifespan runs once, on the main server).
    openai_server = None
    if settings.openai_port is not None:
        openai_server = uvicorn.Server(uvicorn.Config(
            OpenAIAtV1(gateway), host=settings.host, port=settings.openai_port, log_level=settings.log_level.lower(),
            access_log=False, http=OpenAIHttpProtocol, lifespan="off", timeout_graceful_shutdown=grace))
        # Signals are the main server's (a second server would take them over); it stops this one with itself.
        openai_server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
        main_exit = server.handle_exit

        def handle_exit(sig: int, frame: FrameType | None) -> None:
            openai_server.should_exit = True  # type: ignore[union-attr]
            main_exit(sig, frame)

        server.handle_exit = handle_exit  # type: ignore[method-assign]

    async def run() -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        follower = loop.create_task(openai_server.serve()) if openai_server and not task.done() else None
        if banner is not None:
            fastapi_app = gateway.app  # type: ignore[attr-defined]
            if await_ready := not task.done():
                await fastapi_app.state.supervisor.wait_startup_models()
            if await_ready and not task.done():
                print(banner, flush=True)
        await task
        if follower is not None:
            openai_server.should_exit = True  # type: ignore[union-attr]
            await follower

    # uvicorn's own choice of loop (uvloop when installed): asyncio.run would give the stock loop, whose
    # transports cost the relay about a fifth more CPU per request.
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
    if not server.started:
        raise typer.Exit(code=1)


def serve(
    config: ConfigOption = Path("models.toml"),
    state_dir: StateDirOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Serve the API for the models of CONFIG (under systemd: Type=notify)."""
    settings = settings_of(config, state_dir, host=host, port=port)
    _serve(settings, catalogue_of(config))


def tiny_models(
    out_dir: Annotated[Path, typer.Argument(help="where to build them; DIR/models.toml lists them")],
    force: Annotated[bool, typer.Option(help="rebuild even those already built")] = False,
) -> None:
    """Build the tiny random-weight model of every engine, offline, and write DIR/models.toml."""
    from appliance.tiny_models import build_all

    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    catalogue = build_all(out_dir, force=force)
    typer.echo(str(catalogue))


def demo(
    state_dir: StateDirOption = None,
    port: Annotated[int, typer.Option(help="port to listen on (127.0.0.1 only)")] = 8080,
    models_dir: Annotated[Path | None, typer.Option(help="where the tiny models are built; "
                                                         "default STATE_DIR/tiny-models")] = None,
) -> None:
    """Tiny CPU models, a fresh API key, and the appliance on 127.0.0.1:PORT."""
    from appliance.db.database import open_database
    from appliance.db.keys import KeyStore
    from appliance.permissions import PERMISSIONS
    from appliance.tiny_models import build_all

    state = (state_dir or Path(".cache/demo")).resolve()
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    models_dir = models_dir or state / "tiny-models"
    typer.echo(f"building tiny models in {models_dir} (once; later runs reuse them) …")
    catalogue_path = build_all(models_dir)
    settings = settings_of(catalogue_path, state, host="127.0.0.1", port=port)
    catalogue = catalogue_of(catalogue_path)
    # The operator's key: it may also make keys (with budgets) over the API and read everyone's usage.
    _key, secret = KeyStore(open_database(settings.effective_database_url)).create("demo", list(PERMISSIONS))
    banner = "\n".join([
        "", f"The appliance is ready on http://127.0.0.1:{port} with {len(catalogue)} tiny model(s).",
        f"API key: {secret}", f"Console: http://127.0.0.1:{port}/console/ (paste the API key to log in)",
        f"OpenAI clients (SDKs, LangChain, LlamaIndex, litellm): base_url http://127.0.0.1:{port}/oai/v1 and the key "
        "(docs/clients.md)",
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
