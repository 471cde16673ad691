"""Keyless clients cannot exhaust the appliance: slow heads and bodies are cut, connections per client capped,
and no body is read before its key is checked (issue 21, item 2; each test failed before its fix)."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import catalogue_subset
from tests.support.appliance import RunningAppliance, start_appliance

EMBED = "openai/text-embedding-3-small"
LIMITS = {"APPLIANCE_HTTP_HEADER_TIMEOUT_S": "5", "APPLIANCE_HTTP_BODY_TIMEOUT_S": "5",
          "APPLIANCE_MAX_CONNECTIONS_PER_CLIENT": "12"}
WAIT_S = 60  # the most any test waits for the server: far more than the limits above


@pytest.fixture(scope="module")
def appliance(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    state = tmp_path_factory.mktemp("slow-clients-state")
    with start_appliance(catalogue_subset(tiny_catalogue, [EMBED], state / "models.toml"), state,
                         env=LIMITS) as running:
        yield running


def connect(appliance: RunningAppliance) -> socket.socket:
    address = urlsplit(appliance.url)
    return socket.create_connection((address.hostname, address.port), timeout=WAIT_S)


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection (the socket's timeout fails the test otherwise)."""
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("sent", [b"", b"POST /v1/inference/embed HTTP/1.1\r\nHost: box\r\nX-Slow: "])
def test_a_head_that_never_completes_is_closed(appliance: RunningAppliance, sent: bytes) -> None:
    with connect(appliance) as sock:
        sock.sendall(sent)
        assert read_all(sock) == b""  # closed, not left open forever


def test_a_body_that_goes_silent_is_closed(appliance: RunningAppliance) -> None:
    key = appliance.create_key()
    with connect(appliance) as sock:
        sock.sendall(b"POST /v1/inference/embed HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"model\": ")
        assert b" 200 " not in read_all(sock)
    with appliance.client() as http:
        assert http.get("/health").status_code == 200


def test_a_client_past_its_connections_is_refused_with_429_and_the_others_still_served(
        appliance: RunningAppliance) -> None:
    held = [connect(appliance) for _ in range(12)]
    try:
        with connect(appliance) as extra:
            answer = read_all(extra)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429") and b"retry-after: " in head.lower()
        assert json.loads(body)["error"]["code"] == "RATE_LIMITED"
    finally:
        for sock in held:
            sock.close()
    with appliance.client() as http:  # the held ones are gone: new connections are served
        assert http.get("/health").status_code == 200


def test_a_keyless_upload_is_refused_before_its_body_is_read(appliance: RunningAppliance) -> None:
    size = 30 * 1024 * 1024
    with connect(appliance) as sock:
        sock.sendall(b"POST /oai/v1/files HTTP/1.1\r\nHost: box\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: " + str(size).encode() + b"\r\n\r\n--b\r\nContent-Disposition: form-data; "
                     b'name="file"; filename="in.jsonl"\r\n\r\n' + b"x" * 65536)
        answer = read_all(sock)  # the answer comes now, though 30 MB were announced and 64 KB sent
    assert answer.startswith(b"HTTP/1.1 401")
    assert not any((appliance.state_dir / "tmp").iterdir())  # nothing spooled


def test_an_upload_spools_under_the_state_directory_not_the_system_temp(appliance: RunningAppliance) -> None:
    with appliance.client(appliance.create_key()) as http:
        made = http.post("/oai/v1/files", data={"purpose": "batch"},
                         files={"file": ("in.jsonl", b'{"x": 1}\n' * 200_000, "application/jsonl")})
        assert made.status_code == 200, made.text
        assert http.get(f"/oai/v1/files/{made.json()['id']}").json()["bytes"] == 1_800_000
        wrong = http.post("/oai/v1/files", data={"purpose": "fine-tune"}, files={"file": ("a.jsonl", b"{}\n")})
        assert wrong.status_code == 400 and "purpose" in wrong.json()["error"]["message"]  # OpenAI's status
    assert (appliance.state_dir / "tmp").is_dir()
    with httpx.Client() as plain:  # the route is still documented as a multipart upload
        spec = plain.get(appliance.url + "/openapi.json").json()["paths"]["/oai/v1/files"]["post"]
    assert "multipart/form-data" in spec["requestBody"]["content"]
