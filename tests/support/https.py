"""The appliance on HTTPS for tests: certificates made like an operator's CA would, and `appliance serve` with them."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance.tls import authority
from appliance.tls.store import pem_of, pem_of_key
from tests.support.appliance import READY_TIMEOUT_S, RunningAppliance, free_port


def write_pem(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@dataclass
class Authority:
    """A CA of the test's own (a site's corporate CA, or an intermediate below one)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def root(cls, name: str = "Corp Root CA", path_length: int | None = None) -> Authority:
        key = authority.new_key()
        return cls(_ca_certificate(name, key, key, None, path_length), key)

    def intermediate(self, name: str = "Corp Issuing CA", path_length: int | None = 0) -> Authority:
        key = authority.new_key()
        return Authority(_ca_certificate(name, key, self.key, self.certificate, path_length), key)

    def server(self, names: Sequence[str] = ("box.lan",), ips: Sequence[str] = ("127.0.0.1",), days: int = 365,
               not_before: datetime | None = None,
               key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
               ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
        key = key or authority.new_key()
        now = not_before or datetime.now(UTC)
        certificate = authority.issue_server_certificate(self.certificate, self.key, key, list(names), list(ips),
                                                         days=days, now=now)
        return certificate, key

    def client(self, name: str = "pinned-caller") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = authority.new_key()
        return authority.issue_client_certificate(self.certificate, self.key, key, name), key


def _ca_certificate(name: str, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
                    issuer: x509.Certificate | None, path_length: int | None) -> x509.Certificate:
    """A CA certificate as a site's PKI makes one (a root when ``issuer`` is None)."""
    now = datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1000))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
            .sign(signer, hashes.SHA256()))


def server_files(directory: Path, certificate: x509.Certificate, key: object, *chain: x509.Certificate,
                 key_mode: int = 0o600) -> tuple[Path, Path]:
    """cert.pem (the certificate, then ``chain``) and key.pem in ``directory``, as an operator would bring them."""
    directory.mkdir(parents=True, exist_ok=True)
    cert = write_pem(directory / "server.crt", pem_of(certificate, *chain), 0o644)
    key_path = write_pem(directory / "server.key", pem_of_key(key), key_mode)  # type: ignore[arg-type]
    return cert, key_path


def served_certificate(host: str, port: int, server_name: str | None = None) -> x509.Certificate:
    """The certificate the server at ``host``:``port`` shows a new connection (no verification: just look)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    import socket

    with socket.create_connection((host, port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@dataclass
class HttpsAppliance(RunningAppliance):
    ca_file: Path = Path()
    tls_dir: Path = Path()
    port: int = 0

    def client(self, key: str | None = None, timeout: float = 60) -> httpx.Client:  # type: ignore[override]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=self.ssl_context())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError, ssl.SSLError):
                if httpx.get(f"{self.url}/ready", timeout=2, verify=self.ssl_context()).status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"appliance not ready after {timeout} s:\n{self.log()[-4000:]}")


@contextlib.contextmanager
def start_https_appliance(catalogue: Path, state_dir: Path, tls_dir: Path, host_name: str = "localhost",
                          extra: Sequence[str] = (), env: dict[str, str] | None = None,
                          wait: bool = True) -> Iterator[HttpsAppliance]:
    """`appliance serve --tls-cert --tls-key` on 127.0.0.1 with the certificate in ``tls_dir`` (cert, key, ca.pem)."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "serve.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--config", str(catalogue), "--state-dir",
             str(state_dir), "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(tls_dir / "cert.pem"),
             "--tls-key", str(tls_dir / "key.pem"), *extra],
            stdout=log_file, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    running = HttpsAppliance(f"https://{host_name}:{port}", state_dir, catalogue, process, log_path,
                             ca_file=tls_dir / "ca.pem", tls_dir=tls_dir, port=port)
    try:
        if wait:
            running.wait_ready()
        yield running
    finally:
        running.stop()


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def nss_home(ca_file: Path, home: Path) -> Path:
    """A HOME whose NSS database (what Chromium on Linux trusts) holds ``ca_file``: the CA added, nothing else."""
    database = home / ".pki" / "nssdb"
    database.mkdir(parents=True, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{database}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{database}", "-n", "appliance-ca", "-t", "C,,", "-i",
                    str(ca_file)], check=True, capture_output=True)
    return home


def sse_events(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield line[len("data: "):]
