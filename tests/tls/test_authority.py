"""`appliance tls init`: the box's own CA, kept apart, and a server certificate that clients verify for its names."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from appliance.tls import authority
from appliance.tls.lifecycle import init
from appliance.tls.names import dns_name_matches, https_base_url, lan_addresses
from appliance.tls.pem import load_certificates, load_private_key, subject_names
from appliance.tls.store import TlsPaths, install, pem_of
from tests.support.appliance import cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verify_as_a_client(paths: TlsPaths, name: x509.GeneralName) -> None:
    """What a TLS client does with the served chain, trusting ca.pem only (cryptography's RFC 5280 verifier)."""
    leaf, *intermediates = load_certificates(paths.cert)
    store = Store(load_certificates(paths.ca))
    verifier = PolicyBuilder().store(store).build_server_verifier(name)  # type: ignore[arg-type]
    verifier.verify(leaf, intermediates)


def test_init_makes_a_ca_and_a_certificate_clients_verify_for_every_name(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    result = init(paths, ["box.lan", "box", "10.20.0.5", "fd00::5"])
    assert result.created_ca and result.issued
    assert subject_names(load_certificates(paths.cert)[0]) == (["box.lan", "box"], ["10.20.0.5", "fd00::5"])
    for name in (x509.DNSName("box.lan"), x509.DNSName("box"), x509.IPAddress(ipaddress.ip_address("10.20.0.5")),
                 x509.IPAddress(ipaddress.ip_address("fd00::5"))):
        verify_as_a_client(paths, name)
    with pytest.raises(Exception, match="(?i)subject|name"):
        verify_as_a_client(paths, x509.DNSName("other.lan"))


def test_the_ca_key_is_apart_and_private_and_the_served_key_is_not_world_readable(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan"])
    assert paths.ca_key.parent != paths.directory and mode(paths.ca_directory) == 0o700 and mode(paths.ca_key) == 0o600
    assert mode(paths.key) == 0o640 and mode(paths.directory) == 0o750
    assert paths.ca.read_bytes() == paths.ca_cert.read_bytes()  # what clients trust is the CA's certificate only
    assert b"PRIVATE KEY" not in paths.ca.read_bytes() + paths.cert.read_bytes()
    served = [p.name for p in paths.directory.iterdir() if p.is_file()]
    assert sorted(served) == ["ca.pem", "cert.pem", "key.pem"]


def test_the_certificates_fit_what_clients_and_mozillas_profile_accept(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan"])
    leaf = load_certificates(paths.cert)[0]
    ca = load_certificates(paths.ca)[0]
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days <= 366  # Mozilla "intermediate" profile
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3649  # renewals keep the trust clients gave


def test_init_again_keeps_a_good_certificate_and_renews_one_near_expiry_with_the_same_ca(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan"])
    first, ca = paths.cert.read_bytes(), paths.ca.read_bytes()
    again = init(paths, ["box.lan"])
    assert not again.issued and not again.created_ca and paths.cert.read_bytes() == first
    # a certificate 20 days from expiry (within 30) is renewed by the same CA: clients need do nothing
    ca_cert, ca_key = load_certificates(paths.ca_cert)[0], load_private_key(paths.ca_key)
    key = authority.new_key()
    old = authority.issue_server_certificate(ca_cert, ca_key, key, ["box.lan"], [],  # type: ignore[arg-type]
                                             now=datetime.now(UTC) - timedelta(days=345))
    install(paths, [old], key, ca_cert)
    renewed = init(paths, ["box.lan"])
    assert renewed.issued and "expires within 30 days" in renewed.reason
    assert paths.ca.read_bytes() == ca
    assert load_certificates(paths.cert)[0].not_valid_after_utc > old.not_valid_after_utc
    assert (paths.directory / "previous" / "cert.pem").read_bytes() == pem_of(old)  # kept for a manual roll-back
    # a new name of the box is a new certificate too
    assert init(paths, ["box.lan", "10.0.0.9"]).reason == "it does not cover 10.0.0.9"


def test_init_never_replaces_an_imported_certificate_unless_asked(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan"])
    corporate_key = authority.new_key()
    corporate_ca = authority.create_ca("Corp CA", corporate_key)
    key = authority.new_key()
    theirs = authority.issue_server_certificate(corporate_ca, corporate_key, key, ["box.lan"], [])
    install(paths, [theirs], key, corporate_ca)
    assert not init(paths, ["box.lan", "other.lan"]).issued
    assert init(paths, [], renew=True).issued


def test_half_a_ca_is_refused_rather_than_replaced(tmp_path: Path) -> None:
    paths = TlsPaths.of(tmp_path / "tls")
    init(paths, ["box.lan"])
    paths.ca_key.unlink()
    result = cli("tls", "init", "--dir", str(paths.directory), "--name", "box.lan", "--renew", state_dir=tmp_path)
    assert result.returncode == 1 and "holds half a CA" in result.stderr


def test_the_cli_defaults_to_the_boxs_host_names_and_lan_addresses(tmp_path: Path) -> None:
    result = cli("tls", "init", "--dir", str(tmp_path / "tls"), state_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    dns, ips = subject_names(load_certificates(tmp_path / "tls" / "cert.pem")[0])
    assert "localhost" in dns and {"127.0.0.1", "::1"} <= set(ips)
    assert set(lan_addresses()) <= set(ips)
    status = cli("tls", "status", "--dir", str(tmp_path / "tls"), state_dir=tmp_path)
    assert status.returncode == 0 and "expires in 365 days" in status.stdout and "localhost" in status.stdout


def test_wildcards_cover_one_label_and_the_https_base_prefers_a_host_name() -> None:
    assert dns_name_matches("*.corp.example", "box.corp.example")
    assert not dns_name_matches("*.corp.example", "a.box.corp.example")
    assert not dns_name_matches("*.corp.example", "corp.example")
    assert https_base_url(["localhost", "box.lan", "10.0.0.5"], 443) == "https://box.lan"
    assert https_base_url(["localhost", "127.0.0.1", "fd00::5"], 8443) == "https://[fd00::5]:8443"
    assert https_base_url(["localhost", "127.0.0.1"], 443) is None
