"""Requests the HTTP parser refuses: capped, answered in the envelope, and the server keeps serving."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import httpx
import pytest

from appliance.gateway.http_limits import MAX_HEAD_BYTES, MAX_URL_BYTES
from tests.support.appliance import RunningAppliance


def raw_exchange(appliance: RunningAppliance, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` bytes as they are and read the answer until the server closes."""
    address = urlsplit(appliance.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before taking it all
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


def assert_enveloped(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> dict:
    assert status == expected, body
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    data = json.loads(body)
    assert data["status"] == "error" and data["error"]["code"] == code and data["error"]["message"], data
    assert data["meta"]["request_id"] == headers["x-scaigrid-request-id"]
    return data["error"]


@pytest.mark.parametrize("length", [MAX_URL_BYTES + 1, 100 * 1024])
def test_an_over_long_request_line_is_an_enveloped_413(embed_appliance: RunningAppliance, length: int) -> None:
    request = b"GET /" + b"a" * length + b" HTTP/1.1\r\nHost: box\r\n\r\n"
    error = assert_enveloped(*raw_exchange(embed_appliance, request), 413, "PAYLOAD_TOO_LARGE")
    assert "URL" in error["message"]


def test_headers_over_the_limit_are_an_enveloped_413(embed_appliance: RunningAppliance) -> None:
    many = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEAD_BYTES // 1000 + 2))
    request = b"GET /health HTTP/1.1\r\nHost: box\r\n" + many + b"\r\n"
    error = assert_enveloped(*raw_exchange(embed_appliance, request), 413, "PAYLOAD_TOO_LARGE")
    assert "headers" in error["message"]


@pytest.mark.parametrize("bad", [b"Bad Header: x\r\n", b"NoColon\r\n", b"X-Ctl: a\x00b\r\n"])
def test_a_malformed_header_is_an_enveloped_validation_error(embed_appliance: RunningAppliance, bad: bytes) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: box\r\n" + bad + b"\r\n"
    error = assert_enveloped(*raw_exchange(embed_appliance, request), 422, "VALIDATION_ERROR")
    assert "not valid HTTP" in error["message"]


def test_the_openai_surface_gets_its_own_error_shape(embed_appliance: RunningAppliance) -> None:
    request = b"POST /oai/v1/embeddings HTTP/1.1\r\nHost: box\r\nBad Header: x\r\n\r\n"
    status, _headers, body = raw_exchange(embed_appliance, request)
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_requests_within_the_limits_still_work_with_a_large_body(embed_appliance: RunningAppliance) -> None:
    key = embed_appliance.create_key()
    long_but_fine = "/health?" + "q" * (MAX_URL_BYTES - 100)
    assert httpx.get(embed_appliance.url + long_but_fine, timeout=30).status_code == 200
    body = {"model": "openai/text-embedding-3-small", "input": ["x" * 200_000]}
    with embed_appliance.client(key) as client:
        response = client.post("/v1/inference/embed", json=body, headers={"X-Big": "h" * 8000})
    assert response.status_code == 200, response.text


def test_a_head_that_trickles_in_without_end_is_cut_at_the_limit(embed_appliance: RunningAppliance) -> None:
    address = urlsplit(embed_appliance.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: box\r\nX-Endless: ")
        answer = b""
        for _ in range(MAX_HEAD_BYTES // 4096 + 8):  # bounded: well past the limit, then stop
            try:
                sock.sendall(b"v" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.05)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            if answer:
                break
        sock.settimeout(30)
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "PAYLOAD_TOO_LARGE"
