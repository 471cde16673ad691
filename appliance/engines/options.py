"""The ``engine_options`` each engine accepts, checked when the catalogue loads.

A misspelt option is a catalogue error naming the file, the model and the
field, never a silent default. A field left out means the engine's own
default (the worker decides it); these models list names and types only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BUSY_POLL_NICE = 19  # vLLM's spinning processes take only the CPU the relay path leaves (supervisor/priority.py)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchOptions(Options):
    device: str | None = Field(None, description="cpu, cuda, cuda:1…; default cuda when present, else cpu")
    threads: int | None = Field(None, gt=0, description="torch CPU threads of the worker")


class TransformersOptions(TorchOptions):
    dtype: Literal["float32", "float16", "bfloat16"] | None = None


class SentenceTransformersOptions(TorchOptions):
    max_batch_size: int | None = Field(None, gt=0, description="inputs encoded together (default 64)")
    max_wait_ms: float | None = Field(None, ge=0, description="how long a batch waits for more inputs (default 0)")
    max_tokens_per_input: int | None = Field(None, gt=0, description="longest input; default the model's")
    batch_order: Literal["fair", "arrival"] | None = Field(None, description=(
        "fair (default): each batch takes an equal slice of every request waiting; arrival: first come, first "
        "served (a small request waits behind every text queued before it), for measuring fair share against"))


class CrossEncoderOptions(TorchOptions):
    """sentence-transformers serving a rerank model (a CrossEncoder)."""

    max_batch_size: int | None = Field(None, gt=0, description="query–document pairs scored together (default 64)")
    max_wait_ms: float | None = Field(None, ge=0, description="how long a batch waits for more pairs (default 0)")
    max_documents: int | None = Field(None, gt=0, description="documents per request (default 1000)")
    max_queued_pairs: int | None = Field(
        None, gt=0, description="pairs waiting for the engine before 429 (default 4 × max_documents)")
    max_length: int | None = Field(None, gt=0, description="tokens of a query–document pair; default the model's")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(None, description="weights; default as saved")


class DiffusersOptions(TorchOptions):
    variant: str | None = Field(None, description='checkpoint variant, e.g. "fp16"')
    sizes: list[str] | None = Field(None, description="allowed WIDTHxHEIGHT; default the seed's three")
    steps: dict[Literal["standard", "hd"], int] | None = Field(None, description="denoising steps per quality")
    guidance: dict[Literal["standard", "hd"], float] | None = None
    max_batch: int | None = Field(None, gt=0, description="images per pipeline call")
    max_queue: int | None = Field(None, ge=0, description="requests waiting for the GPU before 429")
    blocked_terms: list[str] | None = None
    png_compress_level: int | None = Field(None, ge=0, le=9)
    cpus: list[int] | None = Field(None, min_length=1, description="CPU cores the worker may run on (CPU boxes)")
    nice: int | None = Field(None, ge=0, le=19, description="lower CPU priority of the worker (CPU boxes)")


class FasterWhisperOptions(Options):
    device: str | None = None
    compute_type: str | None = Field(None, description="default float16 on CUDA, int8 on CPU")
    num_workers: int | None = Field(None, gt=0)
    cpu_threads: int | None = Field(None, ge=0)
    beam_size: int | None = Field(None, gt=0)
    vad_filter: bool | None = None
    condition_on_previous_text: bool | None = None
    temperature_fallback: bool | None = None
    max_new_tokens: int | None = Field(None, gt=0)


class PiperOptions(Options):
    device: str | None = None
    voices: dict[str, str] | None = Field(None, description='OpenAI voice name → "VOICE" or "VOICE:SPEAKER"')
    sample_rate: int | None = Field(None, gt=0, description="output sample rate (default 24000)")


class VllmOptions(Options):
    """vLLM's own flags (``max_model_len`` → ``--max-model-len``) plus a few of the appliance's.

    The common flags are listed so that a typo is caught here; any other flag
    goes into ``extra_args`` verbatim.
    """

    dtype: str | None = None
    max_model_len: int | None = Field(None, gt=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    tensor_parallel_size: int | None = Field(None, gt=0)
    pipeline_parallel_size: int | None = Field(None, gt=0)
    data_parallel_size: int | None = Field(None, gt=0)
    distributed_executor_backend: Literal["ray", "mp", "uni", "external_launcher"] | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_num_seqs: int | None = Field(None, gt=0)
    scheduling_policy: Literal["priority", "fcfs"] | None = Field(
        None, description="default priority: batch lines go to vLLM with a low priority, live requests first")
    max_num_batched_tokens: int | None = Field(None, gt=0)
    enable_prefix_caching: bool | None = None
    enable_chunked_prefill: bool | None = None
    enforce_eager: bool | None = None
    trust_remote_code: bool | None = None
    seed: int | None = None
    swap_space: float | None = Field(None, ge=0)
    cpu_offload_gb: float | None = Field(None, ge=0)
    chat_template: str | None = None
    generation_config: str | None = None
    tool_call_parser: str | None = Field(None, description="turns on auto tool choice with this parser")
    tool_strict_level: str | None = None
    reasoning_parser: str | None = None
    tokenizer: str | None = None
    revision: str | None = None
    # Multimodal models (engines/multimodal.py reads these too, to bound what a media part costs).
    limit_mm_per_prompt: dict[str, int] | None = Field(
        None, description='media items a prompt may carry, e.g. {"image": 4, "audio": 2, "video": 0}')
    mm_processor_kwargs: dict[str, Any] | None = Field(
        None, description='overrides of the model\'s processor config, e.g. {"max_pixels": 1003520}')
    allowed_media_domains: list[str] | None = Field(None, description=(
        "hosts vLLM may fetch media URLs from; default none (the gateway hands it checked bytes, never a URL)"))
    # The appliance's own: environment variables of the CPU build.
    cpu_kvcache_space_gb: float | None = Field(None, gt=0, description="VLLM_CPU_KVCACHE_SPACE, in GiB")
    cpu_omp_threads_bind: str | None = Field(None, description="VLLM_CPU_OMP_THREADS_BIND")
    # The appliance's own: how it runs vLLM's processes.
    busy_poll_nice: int = Field(BUSY_POLL_NICE, ge=0, le=19, description=(
        "nice value of vLLM's engine core and worker, which busy-poll between steps; 0 leaves them as vLLM starts"))
    stall_timeout_s: float = Field(60.0, gt=0, description=(
        "with requests in flight, this long without a token processed is a stalled engine: it is restarted"))
    extra_args: list[str] = Field(default_factory=list, description="any other vLLM flags, verbatim")


class RemoteOptions(Options):
    sizes: list[str] | None = Field(None, description="image models: the sizes the remote offers")
    priority_scheduling: bool = Field(
        False, description="the server is vLLM with --scheduling-policy priority: batch lines go with a low priority")
