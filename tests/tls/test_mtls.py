"""mTLS: with tls_client_ca_file set, only callers holding a certificate from that CA get past the handshake."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from appliance.tls.lifecycle import init
from appliance.tls.store import TlsPaths, pem_of
from tests.support.https import Authority, server_files, start_https_appliance, write_pem
from tests.tls.conftest import remote_only_catalogue


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_only_callers_with_a_certificate_of_the_client_ca_get_in(tmp_path: Path) -> None:
    init(TlsPaths.of(tmp_path / "tls"), ["localhost", "127.0.0.1"])
    callers = Authority.root("Pinned callers CA")
    client_ca = write_pem(tmp_path / "clients-ca.pem", pem_of(callers.certificate), 0o644)
    pinned_cert, pinned_key = server_files(tmp_path / "pinned", *callers.client("batch-runner"))
    stranger_cert, stranger_key = server_files(tmp_path / "stranger", *Authority.root("Other").client("stranger"))
    with start_https_appliance(remote_only_catalogue(tmp_path / "models.toml"), tmp_path / "state", tmp_path / "tls",
                               env={"APPLIANCE_TLS_CLIENT_CA_FILE": str(client_ca)}, wait=False) as box:
        def curl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(box.ca_file), *args,
                                   f"https://localhost:{box.port}/health"], capture_output=True, text=True, timeout=60)

        context = ssl.create_default_context(cafile=str(box.ca_file))
        context.load_cert_chain(pinned_cert, pinned_key)
        box.ssl_context = lambda: context  # type: ignore[method-assign]  # wait_ready calls in with the pinned cert
        box.wait_ready(60)
        assert curl("--cert", str(pinned_cert), "--key", str(pinned_key)).stdout.startswith('{"status":"ok"')
        # refused in the handshake (asyncio's TLS layer closes the connection rather than flushing the alert)
        assert curl().returncode != 0
        assert curl("--cert", str(stranger_cert), "--key", str(stranger_key)).returncode != 0
        with httpx.Client(verify=context) as client:
            assert client.get(f"https://localhost:{box.port}/tls/status").json()["client_certificates_required"]
