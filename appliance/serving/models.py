"""Which models a key may reach: resolving the name a client sent, and what each model looks like to it."""

from __future__ import annotations

from appliance.backends.pool import Backend
from appliance.catalogue import ModelEntry
from appliance.protocol.models import BackendInfo, ModelInfo
from appliance.serving.context import Call, Surface
from appliance.serving.errors import ApiError, ErrorCode
from appliance.supervisor.local_backend import LocalBackend, WorkerState
from appliance.supervisor.supervisor import ModelPool
from appliance.tenancy.caller import Caller

MODALITY_NAMES = {"chat": "a chat", "embedding": "an embedding", "image": "an image",
                  "transcription": "a transcription", "speech": "a speech", "rerank": "a rerank"}

HEALTH = {
    WorkerState.READY: "healthy",
    WorkerState.STARTING: "loading",
    WorkerState.BACKOFF: "restarting",
    WorkerState.STOPPED: "idle",
    WorkerState.STOPPING: "idle",
}
# The pool's health is its best backend's.
HEALTH_ORDER = ("healthy", "loading", "restarting", "idle", "unhealthy")


def in_tenant(caller: Caller, entry: ModelEntry) -> bool:
    """Whether the caller's tenant has the model: a tenant sees only the models of its allow-list (if any)."""
    return caller.tenant.models is None or bool(set(entry.names) & set(caller.tenant.models))


def may_use(caller: Caller, entry: ModelEntry) -> bool:
    """Whether the model is the tenant's and the key's model allow-list (if any) names it by its slug or an alias:
    the one place model allow-lists are checked."""
    return in_tenant(caller, entry) and (caller.key.models is None or bool(set(entry.names) & set(caller.key.models)))


def model_not_found(name: str, listing: str = "GET /v1/models") -> ApiError:
    return ApiError(ErrorCode.MODEL_NOT_FOUND, f"No model '{name}' on this appliance; {listing} lists them.")


def resolve_model(call: Call, name: str, modality: str) -> ModelEntry:
    """The catalogue entry the client asked for, checked against the service's modality and the key."""
    entry = call.runtime.catalogue.get(name)
    listing = "GET /models" if call.surface is Surface.OPENAI else "GET /v1/models"
    if entry is None or not in_tenant(call.caller, entry):  # another tenant's model does not exist for this one
        raise model_not_found(name, listing)
    if entry.modality != modality:
        raise ApiError(ErrorCode.VALIDATION_ERROR,
                       f"model: '{name}' is {MODALITY_NAMES[entry.modality]} model; this endpoint needs "
                       f"{MODALITY_NAMES[modality]} model.",
                       details=[{"field": "model", "message": f"'{name}' is {MODALITY_NAMES[entry.modality]} model"}])
    if not may_use(call.caller, entry):
        raise ApiError(ErrorCode.MODEL_ACCESS_DENIED, f"This API key may not use the model '{entry.slug}'.")
    call.served_by(model=entry.slug)
    return entry


def backend_health(backend: Backend) -> str:
    if isinstance(backend, LocalBackend):
        return HEALTH[backend.state]
    return "healthy" if backend.is_up() else "unhealthy"


def model_info(entry: ModelEntry, pool: ModelPool) -> ModelInfo:
    backends = [BackendInfo(id=b.backend_id, health_status=backend_health(b), in_flight=b.in_flight)
                for b in pool.backends]
    return ModelInfo(
        slug=entry.slug, display_name=entry.display_name or entry.slug, modality=entry.api_modality,
        aliases=list(entry.aliases), engine=entry.engine, capabilities=list(entry.capabilities),
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens, status="active",
        health_status=min((b.health_status for b in backends), key=HEALTH_ORDER.index, default="unhealthy"),
        active_backend_count=pool.active_count, total_backend_count=pool.total_count, backends=backends,
    )
