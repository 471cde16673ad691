"""An engine's chat and completion answers as OpenAI's published document has them, on both surfaces.

vLLM answers with fields of its own (``prompt_token_ids``, ``token_ids``,
``stop_reason``, ``kv_transfer_params``, …) and writes ``null`` where OpenAI's
schema has an array or an object (``annotations``, ``function_call``,
``prompt_tokens_details``) or omits the field; its logprobs lack ``refusal``.
Strict clients and validators then refuse the answer. Here the extras go, those
nulls go, and what the schema requires is filled in.

A whole answer is parsed, cleaned and written again (once per request). A
stream is the hot path: its frames are vLLM's compact JSON, so the few patterns
vLLM writes in every frame are cut as bytes (a key in quotes followed by ``:``
cannot occur inside a JSON string, where quotes are escaped); only a frame that
still holds something to clean after that is parsed.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

# Fields only vLLM writes: dropped whatever their value.
ENGINE_ONLY = frozenset({"prompt_logprobs", "prompt_token_ids", "prompt_text", "kv_transfer_params",
                         "ec_transfer_params", "metrics", "stop_reason", "token_ids", "routed_experts"})
# Fields dropped when null: the schema has no null there (or, for vLLM's reasoning fields, nothing to say).
NULL_DROPPED = frozenset({"service_tier", "system_fingerprint", "annotations", "function_call", "tool_calls",
                          "reasoning", "reasoning_content", "prompt_tokens_details", "completion_tokens_details",
                          "audio"})

# The stream's fast path: what vLLM writes into its frames, cut or completed as bytes.
_CUT = (b',"token_ids":null', b',"stop_reason":null', b',"prompt_token_ids":null', b',"prompt_text":null')
_LOGPROBS, _LOGPROBS_WITH_REFUSAL = b'"logprobs":{"content":', b'"logprobs":{"refusal":null,"content":'
# What a frame may still hold after the fast path, that only parsing can clean.
_LEFT = re.compile(("|".join(f'"{key}"' for key in sorted(ENGINE_ONLY)) + "|"
                    + "|".join(f'"{key}": ?null' for key in sorted(NULL_DROPPED))).encode())


def _drop(data: dict[str, Any]) -> None:
    for key in [key for key, value in data.items()
                if key in ENGINE_ONLY or (value is None and key in NULL_DROPPED)]:
        del data[key]


def clean(data: dict[str, Any]) -> dict[str, Any]:
    """A chat completion (or chunk) or a text completion, in place: OpenAI's fields, nothing of vLLM's."""
    _drop(data)
    chat = str(data.get("object", "")).startswith("chat.")
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        _drop(choice)
        message = choice.get("message")
        if isinstance(message, dict):
            _drop(message)
            message.setdefault("content", None)
            message.setdefault("refusal", None)
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _drop(delta)
        logprobs = choice.get("logprobs")
        if chat and isinstance(logprobs, dict):
            logprobs.setdefault("content", None)
            logprobs.setdefault("refusal", None)
    usage = data.get("usage")
    if isinstance(usage, dict):
        _drop(usage)
    return data


def clean_answer(answer: bytes) -> bytes:
    """A whole answer, cleaned; one that is not a JSON object goes as it came (the relay vouched for it)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return answer
    if not isinstance(data, dict):
        return answer
    return json.dumps(clean(data), separators=(",", ":"), ensure_ascii=False).encode()


def clean_frames(data: bytes) -> bytes:
    """Whole SSE frames (``data: {…}\\n\\n`` …), cleaned: the fast path as bytes, a frame it left unclean parsed."""
    for pattern in _CUT:
        if pattern in data:
            data = data.replace(pattern, b"")
    if _LOGPROBS in data and b'"refusal"' not in data:
        data = data.replace(_LOGPROBS, _LOGPROBS_WITH_REFUSAL)
    if not _unclean(data):
        return data
    return b"".join(_clean_frame(frame) + b"\n\n" for frame in data.split(b"\n\n")[:-1])


def _unclean(data: bytes) -> bool:
    return _LEFT.search(data) is not None or _LOGPROBS in data


def _clean_frame(frame: bytes) -> bytes:
    if not frame.startswith(b"data: {") or not _unclean(frame):
        return frame
    try:
        chunk = json.loads(frame[6:])
    except ValueError:
        return frame
    if not isinstance(chunk, dict):
        return frame
    return b"data: " + json.dumps(clean(chunk), separators=(",", ":"), ensure_ascii=False).encode()


async def cleaned(frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A chat or completion stream's frames, cleaned on their way out (closing this closes the relay's frames)."""
    async with contextlib.aclosing(frames):  # type: ignore[type-var]
        async for data in frames:
            yield clean_frames(data)
