"""`appliance serve`, `demo` and `tiny-models`: the gateway under uvicorn, on a catalogue or on the tiny models."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from appliance.catalogue import Catalogue
from appliance.cli.support import (
    EXIT_NEEDS_OPERATOR,
    ConfigOption,
    StateDirOption,
    catalogue_of,
    cli_event,
    database_fail,
    fail,
    open_state_database,
    settings_of,
)
from appliance.config import Settings
from appliance.db.health import DatabaseProblem
from appliance.metrics import TLS_EXPIRY
from appliance.state_dir import (UnsafeDirectory, prepare_socket_dir, prepare_state_dir, raise_open_files_limit,
                                 use_private_temp_dir)
from appliance.tls.activation import HTTP, HTTPS, listening_socket, systemd_sockets
from appliance.tls.context import ServedCertificate
from appliance.tls.names import https_base_url
from appliance.tls.pem import TlsError
from appliance.tls.store import others_may_read


def _serve(settings: Settings, catalogue: Catalogue, banner: str | None = None) -> None:
    import uvicorn

    from appliance.gateway.app import create_gateway
    from appliance.gateway.http_limits import BoundedHttpProtocol
    from appliance.gateway.openai_at_v1 import OpenAIAtV1, OpenAIHttpProtocol

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at each start
    for warning in prepare_state_dir(settings.state_dir):
        logging.getLogger("appliance").warning("%s", warning)
    try:
        prepare_socket_dir(settings.socket_dir)
    except UnsafeDirectory as exc:
        raise fail(str(exc), EXIT_NEEDS_OPERATOR) from None
    raise_open_files_limit()
    use_private_temp_dir(settings.state_dir)
    if settings.tls and settings.openai_port is not None:
        raise fail("openai_port is plain HTTP and this box serves HTTPS: leave it unset and give the OpenAI host "
                   "names in openai_hosts (their requests to the HTTPS port get the OpenAI API at /v1)")
    listeners = _https_listeners(settings)
    if listeners is not None:
        settings = listeners.settings
    try:
        gateway = create_gateway(settings, catalogue)
    except DatabaseProblem as exc:
        raise database_fail(exc) from None
    grace = int(settings.drain_timeout_s) or None
    main_app = OpenAIAtV1(gateway, settings.openai_hosts) if settings.openai_hosts else gateway
    config = uvicorn.Config(main_app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, http=BoundedHttpProtocol.configured(settings),
                            timeout_graceful_shutdown=grace)
    if listeners is None:
        server = uvicorn.Server(config)
    else:
        gateway.app.state.tls = listeners.certificate  # type: ignore[attr-defined]  # /ca.pem, /tls/status, SIGHUP
        TLS_EXPIRY.certificate = listeners.certificate  # /metrics: days to expiry
        server = listeners.server(config)
    # The OpenAI layer at /v1 on a port of its own: the same app (its lifespan runs once, on the main server).
    openai_server = None
    if settings.openai_port is not None:
        openai_server = uvicorn.Server(uvicorn.Config(
            OpenAIAtV1(gateway), host=settings.host, port=settings.openai_port, log_level=settings.log_level.lower(),
            access_log=False, http=OpenAIHttpProtocol.configured(settings), lifespan="off",
            timeout_graceful_shutdown=grace))
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


@dataclass
class _HttpsListeners:
    """What HTTPS needs before the gateway exists: the certificate, the sockets, the settings it completes."""

    settings: Settings
    certificate: ServedCertificate
    https: socket.socket
    http: socket.socket | None

    def server(self, config: object) -> object:
        from appliance.gateway.errors import ErrorCode
        from appliance.gateway.http_limits import refusal
        from appliance.tls.server import HttpsServer

        from appliance.gateway.routing import surface_for_path

        def refuse(message: str, path: str) -> bytes:
            return refusal(ErrorCode.VALIDATION_ERROR, message, surface_for_path(path))

        return HttpsServer(config, self.certificate, self.https, self.http,  # type: ignore[arg-type]
                           self.settings.public_base_url, refuse)


def _https_listeners(settings: Settings) -> _HttpsListeners | None:
    """With a certificate: it loaded, its sockets (systemd's, else bound here), public_base_url defaulted."""
    handed = systemd_sockets()
    if not settings.tls:
        if handed:
            raise fail(f"systemd passed the socket(s) {', '.join(handed)}, but no certificate is set: give "
                       "tls_cert_file and tls_key_file (--tls-cert, --tls-key)")
        return None
    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    log = logging.getLogger("appliance.tls")
    try:
        if others_may_read(settings.tls_key_file):
            log.warning("%s, the TLS private key, is readable by every user of this box: chmod 640 it",
                        settings.tls_key_file)
        certificate = ServedCertificate(settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_file,
                                        settings.tls_client_ca_file, settings.tls_expiry_warn_days)
    except (TlsError, OSError) as exc:
        raise fail(f"HTTPS cannot start: {exc}") from None
    try:
        https = handed.get(HTTPS) or listening_socket(settings.host, settings.port)
        http = handed.get(HTTP) or (listening_socket(settings.host, settings.http_redirect_port)
                                    if settings.http_redirect_port is not None else None)
    except OSError as exc:
        raise fail(f"cannot listen on {settings.host}: {exc.strerror}") from None
    if settings.public_base_url is None and (base := https_base_url(certificate.facts.names, https.getsockname()[1])):
        settings = settings.model_copy(update={"public_base_url": base})
    log.info("HTTPS with the certificate for %s (issued by %s, valid until %s); media and batch URLs on %s",
             ", ".join(certificate.facts.names), certificate.facts.issuer, certificate.facts.not_after.date(),
             settings.public_base_url)
    return _HttpsListeners(settings, certificate, https, http)


def serve(
    config: ConfigOption = Path("models.toml"),
    state_dir: StateDirOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="serve HTTPS with this certificate (PEM, "
                                                  "then its chain); SIGHUP reloads it")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="the certificate's private key")] = None,
    http_redirect_port: Annotated[int | None, typer.Option(help="with HTTPS: also listen for plain HTTP here, "
                                                           "answering only a redirect to HTTPS")] = None,
) -> None:
    """Serve the API for the models of CONFIG (under systemd: Type=notify; socket-activated: HTTPS on 443)."""
    settings = settings_of(config, state_dir, host=host, port=port, tls_cert_file=tls_cert, tls_key_file=tls_key,
                           http_redirect_port=http_redirect_port)
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
    # The operator's key (the box admin's): it may also make tenants, users and keys (with budgets) over the API and
    # read everyone's usage and the audit log.
    engine = open_state_database(settings.effective_database_url)
    _key, secret = KeyStore(engine).create("demo", list(PERMISSIONS))
    banner = "\n".join([
        "", f"The appliance is ready on http://127.0.0.1:{port} with {len(catalogue)} tiny model(s).",
        f"API key: {secret}", f"Console: http://127.0.0.1:{port}/console/ (paste the API key to log in)",
        *_demo_tenants(engine, catalogue),
        f"OpenAI clients (SDKs, LangChain, LlamaIndex, litellm): base_url http://127.0.0.1:{port}/oai/v1 and the key "
        "(docs/clients.md)",
        "Try:", *_demo_examples(catalogue, port, secret), "Stop with Ctrl-C.", "",
    ])
    _serve(settings, catalogue, banner=banner)


# A 32×32 red square: the demo's chat about an image.
RED_SQUARE = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAKklEQVR42u3NMQEAAAQAMATRP4pYSvBt"
              "BZbTHZ8qngkEAoFAIBAIBIIrC+AFAUQz669uAAAAAElFTkSuQmCC")


def _beep(seconds: float = 0.1, rate: int = 8000, hertz: int = 440) -> str:
    """A short tone as a WAV in base64: the demo's chat about a sound (an input_audio part; small enough to paste)."""
    import base64
    import io
    import math
    import wave

    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)  # 8-bit PCM: unsigned, silence at 128
        wav.setframerate(rate)
        wav.writeframes(bytes(128 + round(100 * math.sin(2 * math.pi * hertz * i / rate))
                              for i in range(int(seconds * rate))))
    return base64.b64encode(out.getvalue()).decode()


# Two tenants sharing the demo box, each with its own models, budget, admin and user.
DEMO_TENANTS = [
    ("research", ["scailabs/poolnoodle-omni", "scailabs/tiny-chat", "openai/text-embedding-3-small"],
     {"tokens": 200_000}),
    ("support", ["openai/text-embedding-3-small", "openai/tts-1", "openai/whisper-1"],
     {"tokens": 50_000, "audio_seconds": 600.0}),
]


def _demo_tenants(engine: Any, catalogue: Catalogue) -> list[str]:
    """The demo's two tenants (made on the first run, audited as the CLI) and a fresh key for each one's admin."""
    from appliance.db.keys import Budget, KeyStore
    from appliance.tenancy.audit import AuditLog
    from appliance.tenancy.store import TenantStore, UserStore

    tenants, users, keys, log = TenantStore(engine), UserStore(engine), KeyStore(engine), AuditLog(engine)
    lines = ["Two tenants share it (GET /v1/me with a key says who it is):"]
    for name, models, limits in DEMO_TENANTS:
        served = [slug for slug in models if catalogue.get(slug) is not None]
        tenant = tenants.named(name)
        if tenant is None:
            event = cli_event("tenant.create", "tenant", details={"name": name})
            with log.change(event) as session:
                budget = Budget("day", **limits)  # type: ignore[arg-type]
                tenant = tenants.create(name, served, None, budget, session=session)
                event.resource_id = event.tenant_id = tenant.id
                for role in ("tenant_admin", "tenant_user"):
                    users.create(tenant.id, f"{role.removeprefix('tenant_')}@{name}.example", None, [role], session)
        admin = users.with_email(tenant.id, f"admin@{name}.example")
        if admin is None:
            continue
        event = cli_event("api_key.create", "api_key", tenant_id=tenant.id, details={"name": f"{name} admin (demo)"})
        with log.change(event) as session:
            key, secret = keys.create(f"{name} admin (demo)", ["admin:access"], user_id=admin.id,
                                      tenant_id=tenant.id, session=session)
            event.resource_id = key.id
        lines.append(f"  {name}: models {', '.join(served)}; admin key {secret}")
    return lines


# One example per modality the demo serves: (modality, route, body, curl options after the body).
DEMO_EXAMPLES = [
    ("embedding", "/v1/inference/embed",
     {"model": "openai/text-embedding-3-small", "input": ["first text", "second text"], "dimensions": 1536}, ""),
    ("rerank", "/v1/inference/rerank",
     {"model": "rerank-v3.5", "query": "What is the capital of France?",
      "documents": ["Berlin is the capital of Germany.", "Paris is the capital of France.", "France borders Spain."],
      "top_n": 2}, ""),
    ("chat", "/v1/inference/chat",
     {"model": "scailabs/poolnoodle-omni", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 32,
      "stream": True}, " -N"),
    ("vision", "/v1/inference/chat",
     {"model": "scailabs/poolnoodle-omni", "max_tokens": 32, "messages": [{"role": "user", "content": [
         {"type": "text", "text": "What colour is this?"}, {"type": "image_url", "image_url": {"url": RED_SQUARE}}]}]},
     ""),
    ("hearing", "/v1/inference/chat",
     {"model": "scailabs/poolnoodle-omni", "max_tokens": 32, "messages": [{"role": "user", "content": [
         {"type": "text", "text": "What do you hear?"},
         {"type": "input_audio", "input_audio": {"data": _beep(), "format": "wav"}}]}]}, ""),
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
        if modality in ("vision", "hearing"):
            return entry is not None and {"vision": "vision", "hearing": "audio_input"}[modality] in entry.capabilities
        return entry is not None and entry.modality == modality

    examples = [example for example in DEMO_EXAMPLES if served(example[0], example[2])]
    for _modality, route, body, extra in [*examples, KEY_EXAMPLE]:
        lines.append(f"  curl -s http://127.0.0.1:{port}{route} -H {shlex.quote('Authorization: Bearer ' + secret)} "
                     f"-H 'Content-Type: application/json' -d {shlex.quote(json.dumps(body))}{extra}")
    return lines
