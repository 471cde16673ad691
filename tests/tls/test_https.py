"""The appliance on HTTPS, spoken to by real clients: curl, the official Python SDK, httpx, the openai npm package.

What a LAN client meets: the certificate verifies with the CA alone, plain HTTP on the HTTPS port and on the
redirect port is answered with a sentence, the console sends HSTS, /ca.pem and /tls/status say what to trust and
until when, /metrics counts the days; old protocols and weak ciphers are refused.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from appliance.tls.context import TLS12_CIPHERS
from tests.support.appliance import free_port
from tests.support.https import HttpsAppliance
from tests.tls.conftest import CHAT, EMBED, remote_only_catalogue

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "support" / "node"


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_trusts_the_box_with_its_ca_alone(https_box: HttpsAppliance) -> None:
    key = https_box.create_key()
    url = f"https://localhost:{https_box.port}/v1/inference/embed"
    body = json.dumps({"model": EMBED, "input": ["over TLS"]})
    answer = curl("--cacert", str(https_box.ca_file), url, "-H", f"Authorization: Bearer {key}",
                  "-H", "Content-Type: application/json", "-d", body)
    assert answer.returncode == 0, answer.stderr
    assert len(json.loads(answer.stdout)["data"]["data"][0]["embedding"]) == 1536
    # the same name on the certificate (box.lan), and the address: both verify
    by_name = curl("--cacert", str(https_box.ca_file), "--resolve", f"box.lan:{https_box.port}:127.0.0.1",
                   f"https://box.lan:{https_box.port}/health")
    by_address = curl("--cacert", str(https_box.ca_file), f"https://127.0.0.1:{https_box.port}/health")
    assert by_name.returncode == 0 and by_address.returncode == 0, by_name.stderr + by_address.stderr
    untrusted = curl(f"https://localhost:{https_box.port}/health")  # without the CA: curl refuses, as it must
    assert untrusted.returncode == 60 and "certificate" in untrusted.stderr


def test_the_python_sdk_with_verify_and_with_ssl_cert_file(https_box: HttpsAppliance) -> None:
    key = https_box.create_key()
    base = f"https://localhost:{https_box.port}/oai/v1"
    client = openai.OpenAI(base_url=base, api_key=key, http_client=openai.DefaultHttpxClient(
        verify=https_box.ssl_context()), max_retries=0)
    assert len(client.embeddings.create(model=EMBED, input=["hello"]).data[0].embedding) == 1536
    stream = client.chat.completions.create(model=CHAT, messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=8, stream=True)
    assert [chunk for chunk in stream][-1].choices[0].finish_reason == "length"
    # SSL_CERT_FILE: the SDK as a user's script runs it, with no TLS code at all (docs/trusting-the-box.md)
    script = ("import openai, sys; c = openai.OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0); "
              f"print(len(c.embeddings.create(model='{EMBED}', input=['hi']).data[0].embedding))")
    env = {**os.environ, "SSL_CERT_FILE": str(https_box.ca_file)}
    plain = subprocess.run([sys.executable, "-c", script, base, key], capture_output=True, text=True, timeout=120,
                           env=env)
    assert plain.returncode == 0 and plain.stdout.strip() == "1536", plain.stderr[-2000:]
    without = subprocess.run([sys.executable, "-c", script, base, key], capture_output=True, text=True, timeout=120)
    assert without.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in without.stderr


@pytest.mark.skipif(shutil.which("node") is None or not (NODE_DIR / "node_modules" / "openai").is_dir(),
                    reason="needs node and `npm ci` in tests/support/node (scripts/test runs it)")
def test_the_openai_npm_package_under_node_with_node_extra_ca_certs(https_box: HttpsAppliance) -> None:
    key = https_box.create_key()
    command = ["node", str(NODE_DIR / "client.mjs"), f"https://localhost:{https_box.port}/oai/v1", key, EMBED, CHAT]
    trusting = subprocess.run(command, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "NODE_EXTRA_CA_CERTS": str(https_box.ca_file)})
    result = json.loads(trusting.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert EMBED in result["models"] and result["dimensions"] == 1536
    assert result["chat"]["finish"] == "length" and result["chat"]["chunks"] >= 2
    untrusting = subprocess.run(command, capture_output=True, text=True, timeout=180)
    error = json.loads(untrusting.stdout.strip().splitlines()[-1])["error"]
    assert "UNABLE_TO_VERIFY_LEAF_SIGNATURE" in error or "SELF_SIGNED" in error, error


def test_plain_http_to_the_https_port_is_answered_with_where_to_go_at_once(https_box: HttpsAppliance) -> None:
    started = time.monotonic()
    answer = httpx.get(f"http://127.0.0.1:{https_box.port}/v1/models", timeout=10)
    assert time.monotonic() - started < 5  # an answer, not a hang until some timeout
    assert answer.status_code == 422 and answer.headers["connection"] == "close"
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"].startswith(f"This port speaks HTTPS, and the request came as plain HTTP: call "
                                       f"https://127.0.0.1:{https_box.port}/v1/models instead.")
    with socket.create_connection(("127.0.0.1", https_box.port), timeout=10) as raw:  # bytes that are neither
        raw.sendall(b"\x00\x01\x02garbage")
        try:
            assert raw.recv(100) == b""  # closed at once, nothing said
        except ConnectionResetError:
            pass  # closed with the garbage unread: a reset, as good


def test_the_console_sends_hsts_and_offers_the_ca(https_box: HttpsAppliance) -> None:
    with https_box.client() as client:
        page = client.get("/console/")
        assert page.headers["strict-transport-security"] == "max-age=63072000"
        assert client.get("/").headers["strict-transport-security"] == "max-age=63072000"
        assert 'href="/ca.pem"' in page.text
        ca = client.get("/ca.pem")
        assert ca.status_code == 200 and ca.content == https_box.ca_file.read_bytes()
        assert ca.headers["content-type"] == "application/x-pem-file"
        status = client.get("/tls/status").json()
        assert status["https"] and "box.lan" in status["names"] and status["ca_url"] == "/ca.pem"
        assert 364 < status["days_left"] <= 365 and not status["expiring"] and status["warn_days"] == 30
        metrics = client.get("/metrics").text
    days = float(next(line.split()[1] for line in metrics.splitlines()
                      if line.startswith("appliance_tls_certificate_days_left ")))
    assert 364 < days <= 365


def test_media_urls_use_the_https_name_of_the_certificate(https_box: HttpsAppliance) -> None:
    assert "media and batch URLs on https://box.lan:" in https_box.log()  # the certificate's first non-local name


def _handshake(port: int, **settings: object) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    for name, value in settings.items():
        if name == "ciphers":
            context.set_ciphers(str(value))
        else:
            setattr(context, name, value)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        return f"{tls.version()} {tls.cipher()[0]}"  # type: ignore[index]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_only_tls_1_2_and_1_3_with_forward_secret_aead_ciphers(https_box: HttpsAppliance) -> None:
    assert _handshake(https_box.port).startswith("TLSv1.3 ")
    version, cipher = _handshake(https_box.port, maximum_version=ssl.TLSVersion.TLSv1_2).split()
    assert version == "TLSv1.2" and cipher in TLS12_CIPHERS.split(":") and cipher.startswith("ECDHE-ECDSA-")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(https_box.port, maximum_version=ssl.TLSVersion.TLSv1_1, minimum_version=ssl.TLSVersion.TLSv1,
                   ciphers="ALL:@SECLEVEL=0")
    for weak in ("ECDHE-ECDSA-AES128-SHA", "AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-SHA384"):  # CBC; no forward secrecy
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(https_box.port, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers=weak)


def test_a_certificate_that_cannot_start_https_stops_serve_with_the_reason(tmp_path: Path) -> None:
    from tests.support.https import Authority, server_files

    certificate, _key = Authority.root().server(["box.lan"])
    cert, key = server_files(tmp_path, certificate, Authority.root().key)
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config",
                             str(remote_only_catalogue(tmp_path / "models.toml")), "--state-dir", str(tmp_path / "s"),
                             "--port", str(free_port()), "--tls-cert", str(cert), "--tls-key", str(key)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"error: HTTPS cannot start: {cert} and {key} cannot be served together" in result.stderr
    only_cert = subprocess.run([sys.executable, "-m", "appliance.cli", "serve", "--config",
                                str(tmp_path / "models.toml"), "--tls-cert", str(cert)],
                               capture_output=True, text=True, timeout=60)
    assert only_cert.returncode == 1 and "tls_cert_file and tls_key_file go together" in only_cert.stderr
