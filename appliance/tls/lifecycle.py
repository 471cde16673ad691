"""`appliance tls init | import | status` as functions: make the box's certificate, take an operator's, describe it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from appliance.tls import authority
from appliance.tls.checks import Installable, check_import
from appliance.tls.context import CertificateFacts
from appliance.tls.names import host_names, lan_addresses, split_names, uncovered
from appliance.tls.pem import (PrivateKey, TlsError, days_left, issued_by, load_certificates, load_private_key,
                               subject_names)
from appliance.tls.status import TlsStatus, status_of
from appliance.tls.store import TlsPaths, install, make_dir, pem_of, pem_of_key, write_file

RENEW_WITHIN_DAYS = 30  # `tls init` (so every scripts/install) renews the box's own certificate this close to expiry


@dataclass
class InitResult:
    created_ca: bool
    issued: bool
    reason: str
    facts: CertificateFacts


def box_names(names: list[str]) -> tuple[list[str], list[str]]:
    """The names given, else this box's host names and LAN addresses (with localhost and loopback)."""
    if names:
        return split_names(names)
    return host_names(), lan_addresses()


def _load_or_create_ca(paths: TlsPaths, common_name: str) -> tuple[x509.Certificate, PrivateKey, bool]:
    if paths.ca_cert.exists() and paths.ca_key.exists():
        return load_certificates(paths.ca_cert, "CA certificate")[0], load_private_key(paths.ca_key), False
    if paths.ca_cert.exists() or paths.ca_key.exists():
        raise TlsError(f"{paths.ca_directory}: holds half a CA (ca.pem and ca.key go together); restore the "
                       "missing file, or move the directory away to make a new CA (clients must then trust it anew)")
    make_dir(paths.ca_directory, 0o700)
    key = authority.new_key()
    certificate = authority.create_ca(common_name, key)
    write_file(paths.ca_key, pem_of_key(key), 0o600)
    write_file(paths.ca_cert, pem_of(certificate), 0o644)
    return certificate, key, True


def _why_reissue(paths: TlsPaths, ca: x509.Certificate, dns: list[str], ips: list[str], renew: bool) -> str | None:
    """Why the server certificate must be (re)issued, or None to keep the one in place."""
    if not paths.cert.exists() or not paths.key.exists():
        return "no server certificate yet"
    if renew:
        return "renewal asked for (--renew)"
    current = load_certificates(paths.cert)[0]
    if not issued_by(current, ca):
        return None  # the operator's own certificate (tls import): never replaced unasked
    if days_left(current) <= RENEW_WITHIN_DAYS:
        return f"it expires within {RENEW_WITHIN_DAYS} days ({current.not_valid_after_utc.date()})"
    have_dns, have_ips = subject_names(current)
    missing = uncovered(dns, ips, have_dns, have_ips)  # a new name or LAN address of the box
    return f"it does not cover {', '.join(missing)}" if missing else None


def init(paths: TlsPaths, names: list[str], renew: bool = False, days: int = authority.SERVER_DAYS) -> InitResult:
    """The box's CA (made once) and a server certificate for ``names`` (default: the box's own) signed by it."""
    dns, ips = box_names(names)
    make_dir(paths.directory, 0o750)
    ca, ca_key, created_ca = _load_or_create_ca(paths, f"Appliance CA {(dns or ips)[0]}")
    reason = _why_reissue(paths, ca, dns, ips, renew)
    if reason is None:
        return InitResult(created_ca, False, "the certificate in place is valid and covers the names",
                          CertificateFacts.of(load_certificates(paths.cert)[0]))
    key = authority.new_key()
    certificate = authority.issue_server_certificate(ca, ca_key, key, dns, ips, days=days)
    install(paths, [certificate], key, ca)
    return InitResult(created_ca, True, reason, CertificateFacts.of(certificate))


def check(cert: Path, key: Path, chain: Path | None, names: list[str], public_base_url: str | None) -> Installable:
    """The checks of `tls import`, against the names clients use: given, public_base_url's host, or the box's."""
    if names:
        dns, ips = split_names(names)
    elif public_base_url:
        from urllib.parse import urlsplit

        dns, ips = split_names([urlsplit(public_base_url).hostname or ""])
    else:
        own = host_names()
        dns, ips = [next((n for n in own if "." in n), own[0])], []
    return check_import(cert, key, chain, dns, ips)


def import_certificate(paths: TlsPaths, installable: Installable) -> CertificateFacts:
    install(paths, installable.chain, installable.key, installable.root)
    return CertificateFacts.of(installable.chain[0])


def status(paths: TlsPaths, warn_days: int, now: datetime | None = None) -> TlsStatus:
    if not paths.cert.exists():
        raise TlsError(f"{paths.cert}: no certificate here; make one with `appliance tls init --dir "
                       f"{paths.directory}`")
    facts = CertificateFacts.of(load_certificates(paths.cert)[0])
    return status_of(facts, warn_days, paths.ca.exists(), now=now or datetime.now(UTC))
