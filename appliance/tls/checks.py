"""Whether a certificate, its key and its chain may be served: every refusal a sentence naming the problem."""

from __future__ import annotations

import functools
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.tls.names import uncovered
from appliance.tls.pem import (PrivateKey, TlsError, describe, is_self_signed, issued_by, load_certificates,
                               load_private_key, same_public_key, subject_names)
from appliance.tls.store import others_may_read

MIN_RSA_BITS = 2048
EC_CURVES = {"secp256r1", "secp384r1", "secp521r1"}


@dataclass
class Installable:
    """What passed the checks: the chain to send (leaf first, no root), its root (to offer at /ca.pem), the key."""

    chain: list[x509.Certificate]
    root: x509.Certificate | None
    key: PrivateKey
    notes: list[str] = field(default_factory=list)


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def check_key_file(key_path: Path) -> PrivateKey:
    if key_path.exists() and others_may_read(key_path):
        raise TlsError(f"{key_path}: the private key is readable by every user of this box (mode "
                       f"{key_path.stat().st_mode & 0o777:04o}); a key others could read must be taken as leaked. "
                       f"Make a new key and certificate, or if you are sure, chmod 600 {key_path} and import again")
    key = load_private_key(key_path)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise TlsError(f"{key_path}: an RSA key of {key.key_size} bits is too weak; clients want {MIN_RSA_BITS} "
                       "bits or more")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in EC_CURVES:
        raise TlsError(f"{key_path}: the EC curve {key.curve.name} is not one clients accept "
                       "(P-256, P-384 or P-521)")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TlsError(f"{key_path}: browsers do not accept {type(key).__name__.removeprefix('_')} "
                       "certificates; use an RSA or EC (P-256) key")
    return key


def _check_validity(certificate: x509.Certificate, label: str, now: datetime) -> None:
    if certificate.not_valid_after_utc <= now:
        days = (now - certificate.not_valid_after_utc).days
        raise TlsError(f"{label} expired on {_date(certificate.not_valid_after_utc)} ({days} days ago)")
    if certificate.not_valid_before_utc > now:
        raise TlsError(f"{label} is not valid before {_date(certificate.not_valid_before_utc)}, and it is "
                       f"{_date(now)} on this box: is its clock right?")


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_leaf(leaf: x509.Certificate, cert_path: Path, now: datetime) -> None:
    label = f"{cert_path}: the certificate for {describe(leaf.subject)}"
    if _is_ca(leaf):
        raise TlsError(f"{label} is a CA certificate, not a server certificate; import the certificate the CA "
                       "issued for this box")
    try:
        usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            raise TlsError(f"{label} is not for TLS servers (its extended key usage lacks serverAuth)")
    except x509.ExtensionNotFound:
        pass
    if isinstance(leaf.signature_hash_algorithm, hashes.SHA1 | hashes.MD5):
        raise TlsError(f"{label} is signed with {leaf.signature_hash_algorithm.name.upper()}, which clients "
                       "reject; ask for one signed with SHA-256")
    _check_validity(leaf, label, now)


def _check_names(leaf: x509.Certificate, cert_path: Path, wanted_dns: list[str], wanted_ips: list[str]) -> None:
    dns, ips = subject_names(leaf)
    if not dns and not ips:
        raise TlsError(f"{cert_path}: the certificate has no subjectAltName, and clients ignore the common name; "
                       "ask for one that lists the box's names")
    missing = uncovered(wanted_dns, wanted_ips, dns, ips)
    if missing:
        raise TlsError(f"{cert_path}: the certificate is for {', '.join(dns + ips)}, but this box is reached as "
                       f"{', '.join(wanted_dns + wanted_ips)}: {', '.join(missing)} "
                       f"{'is' if len(missing) == 1 else 'are'} not covered (with --name / --ip, say which "
                       "names clients use)")


@functools.cache
def system_roots() -> tuple[x509.Certificate, ...]:
    """The roots of this box's trust store (Debian: /etc/ssl/certs/ca-certificates.crt)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            try:
                with warnings.catch_warnings():  # a few old roots break RFC 5280 (negative serials): not ours to judge
                    warnings.simplefilter("ignore")
                    return tuple(x509.load_pem_x509_certificates(Path(candidate).read_bytes()))
            except ValueError:
                continue
    return ()


def _build_chain(leaf: x509.Certificate, others: list[x509.Certificate], sources: str, now: datetime,
                 roots: tuple[x509.Certificate, ...]) -> tuple[list[x509.Certificate], x509.Certificate | None]:
    """Leaf to root through ``others``, each link's signature checked; a root from the trust store may end it."""
    path, current = [leaf], leaf
    for _ in range(len(others) + 1):
        if is_self_signed(current):
            return path[:-1] if current is not leaf else path, current
        issuer = next((c for c in others if c.subject == current.issuer and c not in path and issued_by(current, c)),
                      None)
        if issuer is None:
            trusted = next((r for r in roots if r.subject == current.issuer and issued_by(current, r)), None)
            if trusted is not None:
                return path, trusted
            if current is leaf and not others:
                raise TlsError(f"the chain is incomplete: {sources} holds only the server certificate, and its "
                               f"issuer '{describe(current.issuer)}' is neither given nor in this box's trust "
                               "store; give the issuing CA's certificates as CHAIN")
            raise TlsError(f"the chain has a gap: '{describe(current.subject)}' was issued by "
                           f"'{describe(current.issuer)}', whose certificate is not in {sources} (nor in this box's "
                           "trust store); add it to CHAIN")
        if not _is_ca(issuer):
            raise TlsError(f"the chain is broken: '{describe(issuer.subject)}' in {sources} is not a CA "
                           "certificate, so it cannot vouch for another")
        _check_validity(issuer, f"the chain's certificate '{describe(issuer.subject)}'", now)
        path.append(issuer)
        current = issuer
    raise TlsError(f"the chain in {sources} loops; give each certificate once, from the server's to the root")


def _check_ca_limits(path: list[x509.Certificate], root: x509.Certificate | None) -> None:
    """Each CA above the leaf may sign certificates (keyCertSign) and allows as many CAs below it as are there."""
    above = path[1:] + ([root] if root is not None and root is not path[-1] else [])
    for depth, ca in enumerate(above):  # depth: how many CA certificates sit between it and the leaf
        try:
            usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_cert_sign:
                raise TlsError(f"the chain is broken: '{describe(ca.subject)}' may not sign certificates (its key "
                               "usage lacks keyCertSign)")
        except x509.ExtensionNotFound:
            pass
        try:
            limit = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        except x509.ExtensionNotFound:
            continue
        if limit is not None and depth > limit:
            raise TlsError(f"the chain is invalid: '{describe(ca.subject)}' allows {limit} CA certificate(s) below "
                           f"it (path length), and the chain has {depth}; clients would refuse it")


def check_import(cert_path: Path, key_path: Path, chain_path: Path | None, wanted_dns: list[str],
                 wanted_ips: list[str], now: datetime | None = None,
                 roots: tuple[x509.Certificate, ...] | None = None) -> Installable:
    """Everything ``tls import`` checks before it changes anything."""
    now = now or datetime.now(UTC)
    key = check_key_file(key_path)
    certificates = load_certificates(cert_path)
    if chain_path is not None:
        certificates += load_certificates(chain_path, "certificate chain")
    leaf = next((c for c in certificates if same_public_key(c, key)), None)
    if leaf is None:
        raise TlsError(f"{key_path} does not match the certificate in {cert_path} "
                       f"('{describe(certificates[0].subject)}'): the key is not the one the certificate was "
                       "made for")
    _check_leaf(leaf, cert_path, now)
    _check_names(leaf, cert_path, wanted_dns, wanted_ips)
    others = [c for c in certificates if c is not leaf]
    sources = f"{cert_path}" + (f" and {chain_path}" if chain_path else "")
    chain, root = _build_chain(leaf, others, sources, now, system_roots() if roots is None else roots)
    _check_ca_limits(chain, root)
    unused = [describe(c.subject) for c in others if c not in chain and c is not root]
    notes = [f"left out, as not part of the chain: {', '.join(unused)}"] if unused else []
    return Installable(chain, root, key, notes)
