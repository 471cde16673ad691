"""Replacing the certificate of a running box: SIGHUP (systemctl reload) loads it for new connections while a
stream in flight finishes on the old one; the catalogue is reloaded by the same signal; a certificate that cannot
be loaded, or that `tls import` refuses, leaves the one in service serving."""

from __future__ import annotations

import json
import os
import signal
import ssl
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import tomli_w
from cryptography.hazmat.primitives import hashes

from appliance.gateway.app import PID_FILE
from appliance.tls.lifecycle import init
from appliance.tls.pem import load_certificates
from appliance.tls.store import TlsPaths, pem_of_key
from tests.support.appliance import cli
from tests.support.https import (Authority, HttpsAppliance, served_certificate, server_files, sse_events,
                                 start_https_appliance)
from tests.tls.conftest import CHAT, EMBED, tls_catalogue


@pytest.fixture(scope="module")
def box(tiny_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsAppliance]:
    root = tmp_path_factory.mktemp("reload-box")
    init(TlsPaths.of(root / "tls"), ["localhost", "127.0.0.1"])
    with start_https_appliance(tls_catalogue(tiny_catalogue, root / "models.toml"), root / "state",
                               root / "tls") as running:
        yield running


def fingerprint_served(box: HttpsAppliance) -> bytes:
    return served_certificate("127.0.0.1", box.port).fingerprint(hashes.SHA256())


def fingerprint_file(path: Path) -> bytes:
    return load_certificates(path)[0].fingerprint(hashes.SHA256())


def wait_serving(box: HttpsAppliance, fingerprint: bytes, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while fingerprint_served(box) != fingerprint:
        assert time.monotonic() < deadline, f"the new certificate is not served:\n{box.log()[-2000:]}"
        time.sleep(0.1)


def sighup(box: HttpsAppliance) -> None:
    os.kill(int((box.state_dir / PID_FILE).read_text()), signal.SIGHUP)


def test_a_certificate_rotated_with_a_stream_in_flight_and_the_catalogue_reloaded_too(box: HttpsAppliance) -> None:
    paths = TlsPaths.of(box.tls_dir)
    old = fingerprint_file(paths.cert)
    assert fingerprint_served(box) == old
    catalogue = tomllib.loads(box.catalogue.read_text())
    for model in catalogue["model"]:
        if model["slug"] == EMBED:
            model["aliases"] = [*model.get("aliases", []), "acme/renamed-embedder"]
    with box.client(box.create_key(), timeout=300) as client:
        body = {"model": CHAT, "messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 512,
                "stream": True}
        with client.stream("POST", "/v1/inference/chat", json=body) as response:
            assert response.status_code == 200
            events = sse_events(response)
            before = [next(events) for _ in range(3)]
            box.catalogue.write_text(tomli_w.dumps(catalogue))
            assert init(paths, ["localhost", "127.0.0.1"], renew=True).issued  # same CA: clients need nothing new
            sighup(box)
            rotated_at = time.monotonic()
            wait_serving(box, fingerprint_file(paths.cert))
            after = list(events)
            finished_at = time.monotonic()
        assert after[-1] == "[DONE]"
        chunks = [json.loads(e) for e in before + after[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert len(after) > 10 and finished_at > rotated_at  # the stream went on after the reload, to its end
        # a new connection verifies the new certificate with the same CA; the catalogue's new alias is served
        assert fingerprint_served(box) != old
        with box.client(box.create_key()) as fresh:
            assert fresh.get("/v1/models/acme/renamed-embedder").status_code == 200
    assert "TLS certificate loaded" in box.log() and "catalogue reloaded" in box.log()


def test_a_certificate_that_cannot_load_at_reload_leaves_the_one_in_service(box: HttpsAppliance) -> None:
    paths = TlsPaths.of(box.tls_dir)
    serving = fingerprint_served(box)
    good_key = paths.key.read_bytes()
    paths.key.write_bytes(pem_of_key(Authority.root().key))  # a hand-copied key of another certificate
    try:
        sighup(box)
        deadline = time.monotonic() + 20
        while "TLS certificate not reloaded" not in box.log():
            assert time.monotonic() < deadline, box.log()[-2000:]
            time.sleep(0.1)
        assert fingerprint_served(box) == serving
        with box.client() as client:
            assert client.get("/health").status_code == 200
    finally:
        paths.key.write_bytes(good_key)


def test_tls_import_on_a_running_box_serves_the_new_certificate_and_a_refused_one_changes_nothing(
        box: HttpsAppliance, tmp_path: Path) -> None:
    corporate = Authority.root("Corp Root CA")
    issuing = corporate.intermediate()
    expired, expired_key = issuing.server(["localhost"], days=1, not_before=datetime(2020, 1, 1, tzinfo=UTC))
    serving = fingerprint_served(box)
    refused = cli("tls", "import", *map(str, server_files(tmp_path / "expired", expired, expired_key,
                                                           issuing.certificate)),
                  "--dir", str(box.tls_dir), "--name", "localhost", state_dir=box.state_dir)
    assert refused.returncode == 1 and "expired on 2020-01-02" in refused.stderr
    assert fingerprint_served(box) == serving

    certificate, key = issuing.server(["localhost"], ips=["127.0.0.1"])
    cert, key_path = server_files(tmp_path / "good", certificate, key, issuing.certificate, corporate.certificate)
    imported = cli("tls", "import", str(cert), str(key_path), "--dir", str(box.tls_dir), "--name", "localhost",
                   state_dir=box.state_dir)
    assert imported.returncode == 0, imported.stderr
    assert "asked the appliance (pid" in imported.stdout
    wait_serving(box, certificate.fingerprint(hashes.SHA256()))
    trust_corporate = tmp_path / "corporate.pem"
    trust_corporate.write_bytes(httpx.get(f"{box.url}/ca.pem", verify=False).content)  # what a client downloads
    assert load_certificates(trust_corporate) == [corporate.certificate]
    trusting = ssl.create_default_context(cafile=str(trust_corporate))
    with httpx.Client(base_url=box.url, verify=trusting) as client:  # the full chain verifies
        assert client.get("/health").status_code == 200
        status = client.get("/tls/status").json()
    assert status["issuer"] == "Corp Issuing CA" and status["subject"] == "localhost"
