"""An engine's chat and completion answers as OpenAI's published document has them, on both surfaces.

vLLM answers with fields of its own (``prompt_token_ids``, ``token_ids``,
``stop_reason``, ``kv_transfer_params``, …) and writes ``null`` where OpenAI's
schema has an array or an object (``annotations``, ``function_call``,
``prompt_tokens_details``) or omits the field; its logprobs lack ``refusal``.
Strict clients and validators then refuse the answer. Here the extras go, those
nulls go, and what the schema requires is filled in.

A whole answer is parsed, cleaned and written again, once per request, with
orjson (a 128-token answer with logprobs is 30 kB: the json module took 7x as
long). A stream is the hot path. A local engine's frames are vLLM's (or the
transformers worker's) compact JSON, so what vLLM writes into every frame is cut
as bytes (a key in quotes followed by ``:`` cannot occur inside a JSON string,
where quotes are escaped), and only a frame still holding one of its fields
after that (a ``stop_reason`` that is not null) is parsed. A remote backend's
frames may come from any server, so each is parsed and cleaned whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson

# Fields only vLLM writes: dropped whatever their value.
ENGINE_ONLY = frozenset({"prompt_logprobs", "prompt_token_ids", "prompt_text", "kv_transfer_params",
                         "ec_transfer_params", "metrics", "stop_reason", "token_ids", "routed_experts"})
# Fields dropped when null: the schema has no null there (or, for vLLM's reasoning fields, nothing to say).
NULL_DROPPED = frozenset({"service_tier", "system_fingerprint", "annotations", "function_call", "tool_calls",
                          "reasoning", "reasoning_content", "prompt_tokens_details", "completion_tokens_details",
                          "audio"})

# The stream's fast path: what vLLM writes into its frames, cut or completed as bytes.
_TOKEN_IDS = b',"token_ids":null'  # in every frame
_PROMPT, _PROMPT_CUT = b'"prompt_', (b',"prompt_token_ids":null', b',"prompt_text":null')  # in the first
_STOP, _STOP_CUT = b'"stop_reason"', b',"stop_reason":null'  # in the last (not null if a stop string ended it)
_LOGPROBS, _LOGPROBS_WITH_REFUSAL = b'"logprobs":{"content":', b'"logprobs":{"refusal":null,"content":'
DELTA_NULLABLE = frozenset({"content", "refusal"})  # the rest of a delta has no null in the schema (role, …)


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
            for key in [key for key, value in delta.items() if value is None and key not in DELTA_NULLABLE]:
                del delta[key]
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
        data = orjson.loads(answer)
    except orjson.JSONDecodeError:  # also what the json module would take and orjson not (NaN)
        return answer
    if not isinstance(data, dict):
        return answer
    return orjson.dumps(clean(data))


def clean_frames(data: bytes, thorough: bool = False) -> bytes:
    """Whole SSE frames (``data: {…}\\n\\n`` …), cleaned: a local engine's as bytes, a frame that stays unclean
    after that parsed; ``thorough`` (a remote backend): every frame parsed.

    A local engine is asked for nothing that makes vLLM write its own fields with values (``token_ids``,
    ``prompt_token_ids``: the request models have no field for them); only ``stop_reason`` can be more than null.
    """
    if thorough:
        return b"".join(_clean_frame(frame) + b"\n\n" for frame in data.split(b"\n\n")[:-1])
    data = data.replace(_TOKEN_IDS, b"")
    unclean = False
    if _PROMPT in data:
        for cut in _PROMPT_CUT:
            data = data.replace(cut, b"")
        unclean = _PROMPT in data
    if _STOP in data:
        data = data.replace(_STOP_CUT, b"")
        unclean = unclean or _STOP in data
    if _LOGPROBS in data:
        if b'"refusal"' in data:
            unclean = True
        else:
            data = data.replace(_LOGPROBS, _LOGPROBS_WITH_REFUSAL)
    if not unclean:
        return data
    return b"".join((_clean_frame(frame) if _unclean(frame) else frame) + b"\n\n"
                    for frame in data.split(b"\n\n")[:-1])


def _unclean(frame: bytes) -> bool:
    return _PROMPT in frame or _STOP in frame or _LOGPROBS in frame


def _clean_frame(frame: bytes) -> bytes:
    if not frame.startswith(b"data: {"):
        return frame
    try:
        chunk = orjson.loads(frame[6:])
    except orjson.JSONDecodeError:
        return frame
    if not isinstance(chunk, dict):
        return frame
    return b"data: " + orjson.dumps(clean(chunk))


async def cleaned(frames: AsyncIterator[bytes], thorough: bool = False) -> AsyncIterator[bytes]:
    """A chat or completion stream's frames, cleaned on their way out (closing this closes the relay's frames);
    ``thorough``: every frame parsed (a remote backend's)."""
    async with contextlib.aclosing(frames):  # type: ignore[type-var]
        async for data in frames:
            yield clean_frames(data, thorough)
