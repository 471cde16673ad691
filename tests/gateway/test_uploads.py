"""The upload limit holds while the body streams in: the reader stops at the first chunk past it."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from appliance.config import Settings
from appliance.serving.errors import ApiError, ErrorCode
from appliance.gateway.uploads import FORM_OVERHEAD, read_upload

BOUNDARY = "b0undary"
CHUNK = 64 * 1024


def _request(chunks: list[bytes], pulled: list[int], content_length: int | None = None) -> Request:
    headers = [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/v1/inference/audio/transcribe", "headers": headers}
    queue = list(chunks)

    async def receive() -> dict:
        pulled[0] += 1
        body = queue.pop(0) if queue else b""
        return {"type": "http.request", "body": body, "more_body": bool(queue)}

    return Request(scope, receive)


def _body(file_size: int) -> list[bytes]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nopenai/whisper-1\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    data = head + b"\0" * file_size + f"\r\n--{BOUNDARY}--\r\n".encode()
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def test_the_default_limit_is_25_mb_and_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().max_upload_bytes == 25 * 1024 * 1024
    monkeypatch.setenv("APPLIANCE_MAX_UPLOAD_BYTES", "1000")
    assert Settings().max_upload_bytes == 1000


def test_an_oversize_stream_is_refused_at_the_first_chunk_past_the_limit() -> None:
    limit = 1024 * 1024
    chunks = _body(10 * limit)
    pulled = [0]
    with pytest.raises(ApiError) as raised:
        asyncio.run(read_upload(_request(chunks, pulled), limit))
    assert raised.value.code == ErrorCode.PAYLOAD_TOO_LARGE
    assert pulled[0] <= (limit + FORM_OVERHEAD) // CHUNK + 2 < len(chunks)  # never the other 9 MB


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    pulled = [0]
    with pytest.raises(ApiError) as raised:
        asyncio.run(read_upload(_request(_body(10), pulled, content_length=5 * 1024 * 1024), 1024 * 1024))
    assert raised.value.code == ErrorCode.PAYLOAD_TOO_LARGE and pulled[0] == 0


def test_an_upload_within_the_limit_is_read_whole() -> None:
    pulled = [0]
    upload = asyncio.run(read_upload(_request(_body(300_000), pulled), 1024 * 1024))
    assert upload.file.size == 300_000 and upload.fields() == {"model": "openai/whisper-1"}
