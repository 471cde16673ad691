"""How many live calls a model runs at once before it is full, and how many may wait: the admission layer's
view of each engine (serving/admission.py).

A catalogue entry's ``max_concurrency`` says it for that model; otherwise each
engine's own figure, per replica (or per remote URL): vLLM runs up to its
``max_num_seqs`` sequences; a worker that runs one job at a time (images) is
full with one, and the rest wait at the gateway, as many as its ``max_queue``.
"""

from __future__ import annotations

from appliance.catalogue import ModelEntry

VLLM_MAX_NUM_SEQS = 256  # vLLM's own default
PER_BACKEND = {  # live calls one replica (or one remote URL) takes at once, by engine
    "transformers": 4,
    "sentence-transformers": 8,
    "diffusers": 1,
    "faster-whisper": 2,
    "piper": 4,
    "remote": 64,
}
DEFAULT_MAX_WAITING = 1024
IMAGE_MAX_QUEUE = 8  # the diffusers worker's own default max_queue


def backends_of(entry: ModelEntry) -> int:
    return len(entry.url) if entry.engine == "remote" else entry.replicas


def concurrency(entry: ModelEntry) -> int:
    """Live calls the model runs at once before new ones wait."""
    if entry.max_concurrency is not None:
        return entry.max_concurrency
    if entry.engine == "vllm":
        per_backend = int(entry.engine_options.get("max_num_seqs") or VLLM_MAX_NUM_SEQS)
    else:
        per_backend = PER_BACKEND.get(entry.engine, 8)
    return per_backend * backends_of(entry)


def max_waiting(entry: ModelEntry) -> int:
    """Live calls that may wait for a slot; one more is refused at once (BACKEND_RATE_LIMITED)."""
    if entry.engine == "diffusers":  # its queue moved to the gateway: as deep as the worker's own would be
        return int(entry.engine_options.get("max_queue", IMAGE_MAX_QUEUE)) * backends_of(entry)
    return DEFAULT_MAX_WAITING
