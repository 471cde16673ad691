"""`appliance tls import CERT KEY [CHAIN]`: an operator's certificate is checked whole before anything changes.

Every refusal is a sentence naming the problem, the exit status is 1, and the files in service stay as they were.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from appliance.tls.lifecycle import init
from appliance.tls.pem import load_certificates
from appliance.tls.store import TlsPaths
from tests.support.appliance import cli
from tests.support.https import Authority, rsa_key, server_files, write_pem


@pytest.fixture
def served(tmp_path: Path) -> TlsPaths:
    """A box serving its own certificate, as scripts/install leaves it."""
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan", "10.0.0.5"])
    return paths


def fingerprint(paths: TlsPaths) -> str:
    return hashlib.sha256(paths.cert.read_bytes() + paths.key.read_bytes() + paths.ca.read_bytes()).hexdigest()


def tls_import(served: TlsPaths, *args: str | Path) -> tuple[int, str]:
    result = cli("tls", "import", *map(str, args), "--dir", str(served.directory), "--name", "box.lan",
                 state_dir=served.directory.parent / "state")
    return result.returncode, result.stdout + result.stderr


def refused(served: TlsPaths, *args: str | Path) -> str:
    """Run an import that must be refused; the served files must not change. Returns what it said."""
    before = fingerprint(served)
    status, said = tls_import(served, *args)
    assert status == 1, said
    assert "not imported, the certificate in service stays" in said
    assert fingerprint(served) == before
    return " ".join(said.split())


def test_a_certificate_with_its_intermediate_is_installed_with_the_root_offered_to_clients(
        served: TlsPaths, tmp_path: Path) -> None:
    root = Authority.root()
    issuing = root.intermediate()
    certificate, key = issuing.server(["box.lan", "*.corp.example"])
    cert, key_path = server_files(tmp_path / "in", certificate, key, issuing.certificate)
    chain = write_pem(tmp_path / "in" / "chain.pem", root.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    status, said = tls_import(served, cert, key_path, chain)
    assert status == 0, said
    assert "installed in" in said and "issued by Corp Issuing CA" in said
    assert load_certificates(served.cert) == [certificate, issuing.certificate]  # leaf and intermediate; no root
    assert load_certificates(served.ca) == [root.certificate]
    assert (served.directory / "previous" / "cert.pem").exists()
    assert "no running appliance found" in said


def test_a_key_that_is_not_the_certificates_is_refused(served: TlsPaths, tmp_path: Path) -> None:
    certificate, _key = Authority.root().server(["box.lan"])
    cert, key_path = server_files(tmp_path / "in", certificate, Authority.root().key)
    said = refused(served, cert, key_path)
    assert f"{key_path} does not match the certificate in {cert}" in said


def test_an_expired_certificate_is_refused_with_its_date(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["box.lan"], days=30,
                                               not_before=datetime.now(UTC) - timedelta(days=40))
    said = refused(served, *server_files(tmp_path / "in", certificate, key))
    assert "expired on" in said and "(10 days ago)" in said


def test_a_certificate_for_other_names_is_refused_naming_the_missing_ones(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["other.lan"], ips=["10.9.9.9"])
    said = refused(served, *server_files(tmp_path / "in", certificate, key))
    assert "the certificate is for other.lan, 10.9.9.9, but this box is reached as box.lan: box.lan is not covered" \
        in said


def test_a_chain_with_a_gap_is_refused_naming_the_missing_issuer(served: TlsPaths, tmp_path: Path) -> None:
    root = Authority.root()
    issuing = root.intermediate("Corp Issuing CA 2")
    certificate, key = issuing.server(["box.lan"])
    cert, key_path = server_files(tmp_path / "in", certificate, key)
    chain = write_pem(tmp_path / "in" / "chain.pem", root.certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    said = refused(served, cert, key_path, chain)  # the intermediate between them is missing
    assert "the chain has a gap: 'box.lan' was issued by 'Corp Issuing CA 2', whose certificate is not in" in said
    alone = refused(served, cert, key_path)
    assert "holds only the server certificate, and its issuer 'Corp Issuing CA 2' is neither given nor in this " \
           "box's trust store" in alone


def test_a_chain_clients_would_refuse_is_refused_here_first(served: TlsPaths, tmp_path: Path) -> None:
    root = Authority.root("Strict Root", path_length=0)  # allows no intermediate below it
    issuing = root.intermediate()
    certificate, key = issuing.server(["box.lan"])
    cert, key_path = server_files(tmp_path / "in", certificate, key, issuing.certificate, root.certificate)
    said = refused(served, cert, key_path)
    assert "'Strict Root' allows 0 CA certificate(s) below it (path length), and the chain has 1" in said


def test_a_file_that_is_not_pem_is_refused_with_how_to_convert_it(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["box.lan"])
    cert, key_path = server_files(tmp_path / "in", certificate, key)
    der = tmp_path / "in" / "server.der"
    der.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
    said = refused(served, der, key_path)
    assert f"{der}: not a PEM file" in said and "openssl x509 -inform der" in said
    key_der = write_pem(tmp_path / "in" / "key.der", key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    assert f"{key_der}: not a PEM file" in refused(served, cert, key_der)


def test_a_world_readable_key_is_refused_as_leaked(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["box.lan"])
    cert, key_path = server_files(tmp_path / "in", certificate, key, key_mode=0o644)
    said = refused(served, cert, key_path)
    assert "the private key is readable by every user of this box (mode 0644)" in said
    assert "must be taken as leaked" in said


def test_an_encrypted_key_a_weak_key_and_a_ca_certificate_are_refused(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["box.lan"])
    cert, _ = server_files(tmp_path / "in", certificate, key)
    encrypted = write_pem(tmp_path / "in" / "locked.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    assert "encrypted with a passphrase" in refused(served, cert, encrypted)

    weak, weak_key = Authority.root().server(["box.lan"], key=rsa_key(1024))
    assert "an RSA key of 1024 bits is too weak" in refused(served, *server_files(tmp_path / "weak", weak, weak_key))

    ca = Authority.root("Some CA")
    cert, key_path = server_files(tmp_path / "ca", ca.certificate, ca.key)
    assert "is a CA certificate, not a server certificate" in refused(served, cert, key_path)


def test_a_missing_file_is_named(served: TlsPaths, tmp_path: Path) -> None:
    certificate, key = Authority.root().server(["box.lan"])
    _cert, key_path = server_files(tmp_path / "in", certificate, key)
    assert f"{tmp_path}/nope.pem: no such file (the certificate)" in refused(served, tmp_path / "nope.pem", key_path)
