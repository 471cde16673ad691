"""From a service to a model's backend and back: pick a backend, send, map its failures.

Every call goes through ``call_backend``: it asks the supervisor for a backend (a local
replica or a remote server), sends the request through that backend's
endpoint (the one transport), and when the backend cannot be reached at all
tries the next healthy one, so a dead backend costs no request.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import anyio

from appliance.backends.pool import Backend
from appliance.backends.transport import TransportError, Unreachable
from appliance.catalogue import ModelEntry
from appliance.serving.admission import admitted
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode, Reason
from appliance.supervisor.supervisor import ModelUnavailable, Supervisor

T = TypeVar("T")
# A request body, or a function that makes it once the call is admitted (it may then carry the call's priority).
Payload = bytes | Callable[[], bytes]


def is_remote(backend: Backend) -> bool:
    return backend.backend_id.startswith("remote:")


def describe(backend: Backend) -> str:
    """Who failed, for a person: the local engine, or the remote backend by its id (never its key)."""
    if is_remote(backend):
        return f"Backend '{backend.backend_id}' of model '{backend.entry.slug}'"
    return f"The engine of model '{backend.entry.slug}'"


async def call_backend(call: Call, entry: ModelEntry, send: Callable[[Backend], Awaitable[T]],
                       admit: bool = True) -> T:
    """``send`` the call to a backend of ``entry``, once the model admits it (serving/admission.py: at once while it
    has room, in fair order once it is full); on to the next backend while one cannot be reached.

    The call holds its slot, and the backend counts it in flight, for as long as ``send`` runs (``admit``
    False: the caller holds the slot itself, for a stream that outlives this call).
    """
    supervisor: Supervisor = call.runtime.supervisor
    pool = supervisor.pools.get(entry.slug) if call.background else None
    async with admitted(call, entry) if admit else contextlib.nullcontext():
        with pool.background_call() if pool is not None else contextlib.nullcontext():  # a batch line: not live
            return await _try_backends(call, entry, send, supervisor)


async def _try_backends(call: Call, entry: ModelEntry, send: Callable[[Backend], Awaitable[T]],
                        supervisor: Supervisor) -> T:
    tried: list[Backend] = []
    while True:
        try:
            backend = await supervisor.acquire(entry, exclude=tried)
        except ModelUnavailable as exc:
            if tried:  # every backend it could reach refused the connection just now
                last = tried[-1]
                raise ApiError(ErrorCode.MODEL_UNAVAILABLE, f"{describe(last)} is not reachable right now.",
                               retry_after=last.retry_after_s()) from None
            raise ApiError(ErrorCode.MODEL_UNAVAILABLE, exc.message, retry_after=exc.retry_after) from None
        call.served_by(backend=backend.backend_id)
        async with backend.use():
            try:
                return await send(backend)
            except Unreachable as exc:
                await backend.failed(f"{type(exc).__name__}: {exc}")
                tried.append(backend)
            except TransportError as exc:
                raise await broken(backend, exc) from None


async def broken(backend: Backend, exc: BaseException) -> ApiError:
    """The error a failure in the middle of a call means; a backend that died is taken out of rotation."""
    if isinstance(exc, TimeoutError):
        return ApiError(ErrorCode.BACKEND_TIMEOUT, f"{describe(backend)} did not answer in time.", retry_after=5)
    if getattr(backend, "unresponsive", False):  # the supervisor gave up waiting on it and restarts it
        return ApiError(ErrorCode.BACKEND_TIMEOUT, f"{describe(backend)} stopped responding and is being "
                                                   "restarted; retry in a moment.", retry_after=backend.retry_after_s())
    await backend.failed(f"{type(exc).__name__} while answering")
    then = "it is out of rotation until it answers its health checks" if is_remote(backend) else \
        "if it stopped, it is being restarted"
    return ApiError(ErrorCode.BACKEND_ERROR, f"{describe(backend)} failed while answering ({type(exc).__name__}); "
                                             f"{then}. Retrying once may help.")


def backend_headers(call: Call, content_type: str | None = "application/json") -> dict[str, str]:
    headers = {"x-request-id": call.request_id}
    if content_type:
        headers["content-type"] = content_type
    return headers


@dataclass
class Answer:
    body: bytes
    content_type: str
    headers: Mapping[str, str]


async def post(call: Call, entry: ModelEntry, path: str, data: Callable[[], Any],
               content_type: str | None = "application/json", json_answer: bool = True,
               at_root: bool = False, admit: bool = True) -> Answer:
    """POST ``data()`` (made anew for each backend tried) and return the whole answer, or raise its ApiError."""

    async def send(backend: Backend) -> Answer:
        status, headers, body = await backend.endpoint.post_bytes(path, data(), backend_headers(call, content_type),
                                                                  at_root=at_root)
        if status >= 400:
            raise backend_error(backend, status, body, headers)
        media_type = headers.get("content-type", "application/json")
        return Answer(checked_json(backend, body) if json_answer else body, media_type, headers)

    return await call_backend(call, entry, send, admit)


async def post_json(call: Call, entry: ModelEntry, path: str, payload: Payload, at_root: bool = False,
                    admit: bool = True) -> bytes:
    """POST a JSON body (or the body a function makes once the call is admitted) and return the backend's JSON
    answer."""
    data = payload if callable(payload) else lambda: payload
    return (await post(call, entry, path, data, at_root=at_root, admit=admit)).body


def checked_json(backend: Backend, body: bytes) -> bytes:
    """The answer as the client gets it: a JSON object, named by the frontend slug.

    A local worker is ours, so a glance at its ends suffices; a remote one is
    parsed in full (a proxy's HTML page, a truncated body) and its own name for
    the model becomes the slug the client asked for.
    """
    entry = backend.entry
    if not is_remote(backend):
        if body[:1] == b"{" and body.rstrip()[-1:] == b"}":
            return body
        raise not_json(backend)
    try:
        data = json.loads(body)
    except ValueError:
        raise not_json(backend) from None
    if not isinstance(data, dict):
        raise not_json(backend)
    if data.get("model") == entry.served_model and entry.served_model != entry.slug:
        data["model"] = entry.slug
        return json.dumps(data, separators=(",", ":")).encode()
    return body


def not_json(backend: Backend) -> ApiError:
    return ApiError(ErrorCode.BACKEND_ERROR, f"{describe(backend)} answered with something that is not a JSON "
                                             "object.")


def backend_error(backend: Backend, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> ApiError:
    """Map an OpenAI-style error answer of a backend onto the contract's codes."""
    message, param, code = openai_error_fields(body)
    who = describe(backend)
    if status in (400, 422):
        field = param or "body"
        reason = Reason.CONTEXT_LENGTH_EXCEEDED if code == Reason.CONTEXT_LENGTH_EXCEEDED.value else None
        return ApiError(ErrorCode.VALIDATION_ERROR, message or f"{who} rejected the request.",
                        details=[{"field": field, "message": message or "rejected by the model"}], reason=reason)
    if status in (401, 403):  # our credentials at a remote, never the client's
        return ApiError(ErrorCode.BACKEND_ERROR, f"{who} refused the appliance's credentials (HTTP {status}); "
                                                 "the operator must check the model's api_key_env.")
    if status == 413:
        return ApiError(ErrorCode.PAYLOAD_TOO_LARGE, message or "The request is too large for this model.")
    retry = (headers or {}).get("retry-after", "")
    retry_after = int(retry) if retry.isdigit() else 5  # a remote appliance or vLLM says how long
    if status == 429:
        return ApiError(ErrorCode.BACKEND_RATE_LIMITED, message or f"{who} is at capacity.", retry_after=retry_after)
    if status == 503:
        return ApiError(ErrorCode.MODEL_UNAVAILABLE, message or f"{who} is not ready.", retry_after=retry_after)
    detail = f": {message}" if message else ""
    return ApiError(ErrorCode.BACKEND_ERROR, f"{who} failed (HTTP {status}){detail}.")


def openai_error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """The message, param and (a string) code of an OpenAI-style error body."""
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None, None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return error.get("message"), error.get("param"), code if isinstance(code, str) else None
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"], None, None
    return None, None, None


@dataclass
class Upstream:
    """A backend's streamed answer, held open (backend counted in flight, connection) until it is closed."""

    backend: Backend
    response: aiohttp.ClientResponse
    stack: contextlib.AsyncExitStack

    @property
    def media_type(self) -> str | None:
        return self.response.headers.get("content-type")


async def open_upstream(call: Call, entry: ModelEntry, path: str, payload: Payload,
                        on_error: Callable[[ApiError], ApiError] = lambda error: error) -> Upstream:
    """POST to a backend of ``entry`` and return its answer unread, to be streamed.

    A failure before the first byte raises the ApiError it means (``on_error``
    may refine it), so the client gets a clean error answer. The call holds its
    slot of the model until the stream is closed.
    """
    slot = contextlib.AsyncExitStack()
    try:
        await slot.enter_async_context(admitted(call, entry))
    except ApiError as exc:
        raise on_error(exc) from None

    async def send(backend: Backend) -> Upstream:
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(backend.use())  # stays in flight until the stream ends
        try:
            body = payload() if callable(payload) else payload
            response = await backend.endpoint.post(path, body, backend_headers(call), stream=True)
            stack.callback(response.close)  # closes the connection, unless read to its end: vLLM aborts
            if response.status >= 400:
                raise backend_error(backend, response.status, await response.read(), response.headers)
        except BaseException:
            await stack.aclose()
            raise
        return Upstream(backend, response, stack)

    try:
        upstream = await call_backend(call, entry, send, admit=False)
    except BaseException as exc:
        await slot.aclose()
        if isinstance(exc, ApiError):
            raise on_error(exc) from None
        raise
    upstream.stack.push_async_exit(slot)
    return upstream


async def open_stream(call: Call, entry: ModelEntry, path: str, payload: bytes) -> tuple[
        AsyncIterator[bytes], str | None]:
    """The backend's answer as raw chunks (speech), and its media type.

    A failure after the first byte cuts the stream, which the client sees as an
    incomplete body rather than a short answer that looks whole.
    """
    upstream = await open_upstream(call, entry, path, payload)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.response.content.iter_any():
                yield chunk
        except TransportError as exc:
            error = await broken(upstream.backend, exc)
            raise RuntimeError(f"the stream of '{entry.slug}' broke off: {error.message}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.stack.aclose()

    return chunks(), upstream.media_type
