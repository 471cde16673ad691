"""The models catalogue: ``models.toml`` parsed into typed, validated entries.

A broken catalogue fails at start with one sentence naming the file, the model
and the field, so an operator can fix it without reading a traceback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from appliance.engines.registry import CAPABILITIES, ENGINES, engine_spec

Modality = Literal["chat", "embedding", "image", "transcription", "speech", "rerank"]
Capability = Literal[CAPABILITIES]  # type: ignore[valid-type]
Engine = Literal[tuple(ENGINES)]  # type: ignore[valid-type]
LoadPolicy = Literal["startup", "on-demand"]

# The API lists transcription and speech models under one modality, "audio".
API_MODALITY: dict[str, str] = {"transcription": "audio", "speech": "audio"}


class CatalogueError(ValueError):
    """The catalogue cannot be used; the message says where and why."""


class Price(BaseModel):
    """What a model costs, in the box's currency (whatever the operator bills in): the cost of usage rows and the
    unit of cost budgets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(0.0, ge=0, description="per million input (prompt) tokens")
    output_per_million: float = Field(0.0, ge=0, description="per million output (completion) tokens")
    per_image: float = Field(0.0, ge=0, description="per image generated")
    per_audio_second: float = Field(0.0, ge=0, description="per second of audio transcribed or spoken")


class ModelEntry(BaseModel):
    """One frontend model: what clients call it, which engine serves it, from where."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)?$", max_length=128)
    display_name: str | None = None
    aliases: tuple[str, ...] = ()
    modality: Modality
    engine: Engine
    path: Path | None = Field(None, description="local weights; required for every engine but remote")
    url: tuple[str, ...] = Field((), description="remote: one or more OpenAI-compatible base URLs (…/v1)")
    remote_model: str | None = Field(None, description="remote: the model's name there; default the slug")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="remote: environment variable holding the bearer token")
    replicas: int = Field(1, ge=1, le=64, description="local engines: worker processes behind one model")
    timeout_s: float | None = Field(None, gt=0, description="longest call to a backend; default the setting")
    max_concurrency: int | None = Field(None, ge=1, le=100_000, description=(
        "live calls it runs at once before new ones wait in fair order (serving/admission.py); default its "
        "engine's (engines/capacity.py)"))
    python: Path | None = Field(None, description="interpreter of the worker's own environment (vLLM)")
    load: LoadPolicy = "on-demand"
    idle_unload_s: float | None = Field(None, gt=0)
    gpu_memory_gb: float = Field(0.0, ge=0)
    context_window: int | None = Field(None, gt=0)
    max_output_tokens: int | None = Field(None, gt=0)
    token_encoding: Literal["cl100k_base"] | None = Field(
        None, description="embedding models: the tiktoken encoding of inputs sent as token ids; a model with one of "
                          "OpenAI's embedding names (text-embedding-3-small, …) takes cl100k_base unless set")
    engine_options: dict[str, Any] = Field(default_factory=dict)
    # After engine_options: its validator reads the engine and its options.
    capabilities: tuple[Capability, ...] = Field((), description=(
        "chat models: what they take beyond text (vision: image parts, audio_input: audio parts, tools)"))
    price: Price = Field(default_factory=Price, description="per-model prices; default free")

    @field_validator("url", mode="before")
    @classmethod
    def _one_url_or_several(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _urls_are_http(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parsed = urlsplit(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"'{url}' is not an http:// or https:// URL")
            if parsed.username or parsed.password:
                raise ValueError(f"'{url}' carries credentials; use api_key_env for the backend's key")
        if len(set(urls)) != len(urls):
            raise ValueError("a URL is listed twice")
        return tuple(url.rstrip("/") for url in urls)

    @field_validator("capabilities")
    @classmethod
    def _capabilities_fit_the_model(cls, capabilities: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if len(set(capabilities)) != len(capabilities):
            raise ValueError("a capability is listed twice")
        modality, engine = info.data.get("modality"), info.data.get("engine")
        if not capabilities or modality is None or engine is None:
            return capabilities
        if modality != "chat":
            raise ValueError(f"capabilities are for chat models; a {modality} model has none")
        beyond = [name for name in capabilities if name not in engine_spec(engine).capabilities]
        if beyond:
            raise ValueError(f"engine '{engine}' cannot give a model '{beyond[0]}'")
        options = info.data.get("engine_options") or {}
        if engine == "vllm" and "tools" in capabilities and not options.get("tool_call_parser"):
            raise ValueError("'tools' on vLLM needs engine_options.tool_call_parser (e.g. \"hermes\")")
        limits = options.get("limit_mm_per_prompt")
        for capability, medium in (("vision", "image"), ("audio_input", "audio")):
            if capability in capabilities and isinstance(limits, dict) and limits.get(medium, 1) == 0:
                raise ValueError(f"'{capability}', but engine_options.limit_mm_per_prompt allows no {medium}")
        return capabilities

    @field_validator("aliases")
    @classmethod
    def _aliases_differ_from_each_other(cls, aliases: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(aliases)) != len(aliases):
            raise ValueError("an alias is listed twice")
        return aliases

    @model_validator(mode="after")
    def _engine_fits(self) -> ModelEntry:
        spec = engine_spec(self.engine)
        if self.modality not in spec.modalities:
            raise ValueError(f"engine '{self.engine}' cannot serve modality '{self.modality}'")
        if spec.local:
            if self.path is None:
                raise ValueError(f"engine '{self.engine}' needs 'path', the local model directory")
            remote_only = [name for name in ("url", "remote_model", "api_key_env") if getattr(self, name)]
            if remote_only:
                raise ValueError(f"'{remote_only[0]}' is for engine 'remote'; engine '{self.engine}' runs here")
        else:
            if not self.url:
                raise ValueError("a remote model needs 'url', one or more OpenAI-compatible base URLs")
            if self.replicas != 1:
                raise ValueError("'replicas' is for local engines; list several URLs for a remote model")
        if self.context_window and self.max_output_tokens and self.max_output_tokens > self.context_window:
            raise ValueError("max_output_tokens is larger than context_window")
        if self.token_encoding is not None and self.modality != "embedding":
            raise ValueError("token_encoding is for embedding models (their inputs sent as token ids)")
        return self

    @property
    def served_model(self) -> str:
        """The model's name at its backend: the slug for local workers, ``remote_model`` for a remote."""
        return self.remote_model or self.slug

    @property
    def api_modality(self) -> str:
        return API_MODALITY.get(self.modality, self.modality)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.slug, *self.aliases)


class Catalogue:
    """The frontend models by slug and by alias."""

    def __init__(self, entries: list[ModelEntry], source: Path | None = None) -> None:
        self.source = source
        self.entries = entries
        self._by_name: dict[str, ModelEntry] = {}
        for entry in entries:
            for name in entry.names:
                other = self._by_name.get(name)
                if other is not None:
                    raise CatalogueError(
                        f"{source or 'catalogue'}: model '{entry.slug}': name '{name}' is already used by '{other.slug}'"
                    )
                self._by_name[name] = entry

    def __iter__(self) -> Iterator[ModelEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, name: str) -> ModelEntry | None:
        """The model called ``name`` (slug or alias), or None."""
        return self._by_name.get(name)


def _field_path(loc: tuple[Any, ...]) -> str:
    from appliance.protocol.fields import field_path

    return field_path(loc, empty="(entry)")


def parse_catalogue(data: dict[str, Any], source: Path | None = None, base_dir: Path | None = None,
                    check_paths: bool = True) -> Catalogue:
    """Validate the parsed TOML of a catalogue; relative paths resolve against ``base_dir``."""
    where = str(source or "catalogue")
    raw_models = data.get("model", [])
    if not isinstance(raw_models, list):
        raise CatalogueError(f"{where}: 'model' must be an array of tables ([[model]])")
    entries: list[ModelEntry] = []
    for index, raw in enumerate(raw_models, start=1):
        name = raw.get("slug", f"#{index}") if isinstance(raw, dict) else f"#{index}"
        try:
            entry = ModelEntry.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CatalogueError(
                f"{where}: model '{name}' (entry {index}): field '{_field_path(first['loc'])}': {first['msg']}"
            ) from None
        try:
            engine_spec(entry.engine, entry.modality).options.model_validate(entry.engine_options)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CatalogueError(f"{where}: model '{name}' (entry {index}): field "
                                 f"'{_field_path(('engine_options', *first['loc']))}': {first['msg']}") from None
        if check_paths and entry.api_key_env and not os.environ.get(entry.api_key_env):
            raise CatalogueError(f"{where}: model '{entry.slug}' (entry {index}): field 'api_key_env': "
                                 f"the environment variable {entry.api_key_env} is not set")
        if entry.path is not None and not entry.path.is_absolute() and base_dir is not None:
            entry = entry.model_copy(update={"path": (base_dir / entry.path).resolve()})
        if check_paths and entry.path is not None and not entry.path.exists():
            raise CatalogueError(f"{where}: model '{entry.slug}' (entry {index}): field 'path': "
                                 f"no such file or directory: {entry.path}")
        entries.append(entry)
    return Catalogue(entries, source)


def load_catalogue(path: Path, check_paths: bool = True) -> Catalogue:
    """Read and validate a ``models.toml``."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise CatalogueError(f"{path}: no such catalogue file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: not valid TOML: {exc}") from None
    return parse_catalogue(data, source=path, base_dir=path.parent, check_paths=check_paths)
