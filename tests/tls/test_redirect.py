"""Port 80's redirect: where a plain-HTTP request is sent, and what is refused instead."""

from __future__ import annotations

import json

from appliance.tls.listener import parse_head
from appliance.tls.redirect import RedirectProtocol, https_location


def refuse(message: str, path: str) -> bytes:
    return json.dumps({"message": message, "path": path}).encode()


def answer(head: bytes, public_base_url: str | None = None, https_port: int = 443) -> bytes:
    protocol = RedirectProtocol(https_port, public_base_url, refuse)
    protocol.head = head
    return protocol.answer()


def test_the_host_keeps_its_name_loses_its_port_and_gains_the_https_one() -> None:
    assert https_location("/console/?a=1", "box.lan:80", 443, None) == "https://box.lan/console/?a=1"
    assert https_location("/x", "10.0.0.5", 8443, None) == "https://10.0.0.5:8443/x"
    assert https_location("/x", "[fd00::5]:80", 443, None) == "https://[fd00::5]/x"
    assert https_location("/x", "box.lan", 443, "https://ai.corp.example/") == "https://ai.corp.example/x"
    assert https_location("http://evil/x", "box.lan", 443, None) == "https://box.lan/"  # absolute-form: path only
    assert https_location("/x", "evil.example/@x", 443, None) is None
    assert https_location("/x", None, 443, None) is None


def test_browsers_get_308_and_api_calls_a_refusal_that_names_the_https_address() -> None:
    redirect = answer(b"GET /console/ HTTP/1.1\r\nHost: box.lan\r\n\r\n")
    assert redirect.startswith(b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://box.lan/console/\r\n")
    head = answer(b"HEAD / HTTP/1.1\r\nhost: box.lan\r\n\r\n")
    assert head.endswith(b"\r\n\r\n")  # no body to a HEAD
    post = json.loads(answer(b"POST /v1/inference/chat HTTP/1.1\r\nHost: box.lan\r\nContent-Length: 2\r\n\r\n{}"))
    assert post["message"].startswith("This appliance serves its API over HTTPS only: send the request to "
                                      "https://box.lan/v1/inference/chat.")
    assert "not an HTTP request" in json.loads(answer(b"\x16\x03\x01 hello"))["message"]
    assert "no valid Host" in json.loads(answer(b"GET / HTTP/1.0\r\n\r\n"))["message"]


def test_a_request_head_is_read_for_its_method_target_and_host() -> None:
    assert parse_head(b"GET /v1/models?x=1 HTTP/1.1\r\nAccept: */*\r\nHOST:  box.lan:443 \r\n\r\n") == (
        "GET", "/v1/models?x=1", "box.lan:443")
    assert parse_head(b"\x16\x03\x01\x02\x00") is None
