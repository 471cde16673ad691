"""Settings of the appliance: one object, from CLI flags, environment, the config file and defaults.

Priority, highest first: values given by the CLI, ``APPLIANCE_*`` environment
variables, the ``[settings]`` table of the config file, the defaults below.
"""

from __future__ import annotations

import hashlib
import tempfile
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict


# A socket path must fit in 108 bytes: a directory of at most 50 and a file name of at most 50.
MAX_SOCKET_DIR_LENGTH = 50
# The system's temporary directory, read before the gateway points its own temporary files at STATE/tmp.
SYSTEM_TEMP_DIR = Path(tempfile.gettempdir())

_file_values: ContextVar[dict[str, Any]] = ContextVar("appliance_file_settings", default={})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", extra="forbid")

    state_dir: Path = Field(Path("/var/lib/appliance"), description="keys DB, worker sockets, media, batches")
    models_dir: Path | None = Field(None, description="where `models import` puts weights; default STATE_DIR/models")
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_base_url: str | None = Field(None, description="absolute base for media and batch URLs; default: the "
                                       "certificate's first host name with TLS, else the request's host")
    tls_cert_file: Path | None = Field(None, description="serve HTTPS with this certificate (PEM, then its chain)")
    tls_key_file: Path | None = Field(None, description="the certificate's private key (PEM, unencrypted)")
    tls_ca_file: Path | None = Field(None, description="the CA certificate offered at /ca.pem; default ca.pem "
                                     "beside tls_cert_file")
    tls_client_ca_file: Path | None = Field(None, description="mTLS: clients must present a certificate this CA "
                                            "signed")
    tls_expiry_warn_days: int = Field(30, ge=0, description="the console warns this many days before the "
                                      "certificate expires")
    http_redirect_port: int | None = Field(None, ge=0, le=65535, description="with TLS: a plain-HTTP port that "
                                           "only redirects to HTTPS (socket-activated: the 'http' socket)")
    openai_port: int | None = Field(None, ge=0, le=65535, description="a second port serving the OpenAI API at /v1 "
                                    "(base_url=http://HOST:PORT/v1), on `host`; unset: /oai/v1 on the main port only")
    openai_hosts: list[str] = Field(default_factory=list, description="host names (e.g. openai.box.lan) whose "
                                    "requests to the main port get the OpenAI API at /v1")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the state dir")
    log_level: str = "info"

    gpu_memory_gb: float | None = Field(None, gt=0, description="memory the workers may hold in all; unset = no ledger")
    worker_start_timeout_s: float = Field(600.0, gt=0, description="how long a worker may take to become healthy")
    request_wait_s: float = Field(5.0, ge=0, description="how long a request waits for a starting worker before 503")
    backend_timeout_s: float = Field(600.0, gt=0, description="how long one backend call may take before 504")
    remote_probe_interval_s: float = Field(10.0, gt=0, description="how often remote backends are health-checked")
    drain_timeout_s: float = Field(30.0, ge=0, description="how long SIGTERM waits for in-flight requests")
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0, description="largest JSON request body")
    http_header_timeout_s: float = Field(10.0, gt=0, description="time a client has to send a request's line and "
                                         "headers (a new connection included) before it is closed")
    http_body_timeout_s: float = Field(30.0, gt=0, description="longest silence in the middle of a request body "
                                       "before the connection is closed")
    max_connections_per_client: int = Field(256, ge=1, description="open connections one client address may hold; "
                                            "more are refused with 429")
    media_ttl_s: int = Field(3600, gt=0, description="lifetime of a media token")
    max_media_bytes: int | None = Field(None, gt=0, description="room for stored media (images); past it, expired "
                                        "files go, then new images wait; unset = a tenth of the state dir's disk")
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, description="largest audio upload (transcription)")
    media_url_allow: list[str] = Field(
        default_factory=list, description="hosts a chat image part's http(s) URL may name (empty: none; the box "
                                          "fetches nothing for a client, no SSRF)")
    max_media_part_bytes: int = Field(20 * 1024 * 1024, gt=0, description="largest image or sound in a chat "
                                      "request, as bytes of its file")
    max_image_pixels: int = Field(40_000_000, gt=0, description="largest image in a chat request, in pixels "
                                  "(checked from its header, before decoding)")
    max_media_parts: int = Field(16, ge=0, description="images and sounds in one chat request, together (a model "
                                 "may take fewer: its limit_mm_per_prompt)")
    max_audio_seconds: float = Field(600.0, gt=0, description="seconds of audio in one chat request, all parts "
                                     "together (a model may take less in one part)")
    rerank_max_documents: int = Field(1000, ge=1, description="documents one rerank request may send (a model's "
                                      "own max_documents engine option wins)")
    budget_reservation_hold_s: float = Field(
        3600.0, gt=0, description="how long a budget reservation outlives its request if the gateway was killed")
    batch_url_allow: list[str] = Field(
        default_factory=list, description="hosts a batch's http(s) input_file_url may name (empty: none, no SSRF)")
    batch_files_dir: Path | None = Field(
        None, description="batch inputs and results; default <state_dir>/files (gateways sharing a DB share it)")
    batch_retention_days: float = Field(30.0, gt=0, description="how long batch inputs and results are kept")
    files_quota_bytes_per_key: int | None = Field(
        1024 * 1024 * 1024, gt=0, description="bytes of batch files (inputs and results) one key may store; "
                                              "unset = no quota")
    batch_concurrency_per_model: int = Field(
        256, ge=1, description="batch lines in flight per model, per gateway, while it has no live traffic")
    batch_concurrency_while_live: int = Field(
        0, ge=0, description="batch lines in flight per model while it has live traffic; those beyond are stopped "
                             "(chat and generate: the engine drops them) and queued again")
    batch_interactive_threshold: int = Field(
        0, ge=0, description="live requests in flight on a model above which its batch lines yield")
    batch_yield_s: float = Field(
        2.0, ge=0, description="after its last live request, how long a model's batch lines keep yielding")
    fair_share: bool = Field(True, description="a full model admits waiting requests in weighted fair order across "
                             "tenants, users and keys (serving/admission.py); false: first come, first served")
    batch_stale_s: float = Field(30.0, gt=0, description="a line claimed by a runner silent this long is re-queued")
    responses_retention_days: float = Field(30.0, gt=0, description="how long stored responses are kept")
    responses_stale_s: float = Field(
        30.0, gt=0, description="a background response claimed by a gateway silent this long is taken over")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: give both (HTTPS) or neither (HTTP)")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mTLS) needs HTTPS: set tls_cert_file and tls_key_file too")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def socket_dir(self) -> Path:
        """Where workers' Unix sockets live: the state dir, unless its path is too long for AF_UNIX (108 bytes).

        The fallback in the system temp dir is used only if this user made it and no one else may enter it
        (state_dir.prepare_socket_dir refuses it otherwise).
        """
        preferred = self.state_dir.resolve() / "sockets"
        if len(str(preferred)) <= MAX_SOCKET_DIR_LENGTH:
            return preferred
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return SYSTEM_TEMP_DIR / f"appliance-{digest}"

    @property
    def media_dir(self) -> Path:
        """Stored media (generated images), named by their tokens' hashes; local image workers write here too."""
        return self.state_dir / "media"

    @property
    def effective_models_dir(self) -> Path:
        return self.models_dir or self.state_dir / "models"

    @property
    def effective_batch_files_dir(self) -> Path:
        return self.batch_files_dir or self.state_dir / "files"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'appliance.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        file_source = InitSettingsSource(settings_cls, init_kwargs=_file_values.get())
        return (init_settings, env_settings, file_source)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the ``[settings]`` table of ``config_file``, the environment and ``overrides``."""
    file_values: dict[str, Any] = {}
    if config_file is not None and config_file.exists():
        with config_file.open("rb") as fh:
            file_values = dict(tomllib.load(fh).get("settings", {}))
    given = {key: value for key, value in overrides.items() if value is not None}
    token = _file_values.set(file_values)
    try:
        return Settings(**given)
    finally:
        _file_values.reset(token)
