"""Certificates and private keys read from PEM files, each failure a sentence that names the file."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


class TlsError(Exception):
    """A certificate or key that cannot be used; the message says why, for a person."""


def read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{path}: no such file (the {what})") from None
    except IsADirectoryError:
        raise TlsError(f"{path}: is a directory, not the {what}") from None
    except PermissionError:
        raise TlsError(f"{path}: this user may not read it (the {what})") from None


def _pem_kinds(data: bytes) -> list[str]:
    return [kind.decode() for kind in _PEM_BLOCK.findall(data)]


def load_certificates(path: Path, what: str = "certificate") -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order; at least one."""
    data = read_bytes(path, what)
    kinds = _pem_kinds(data)
    if not kinds:
        raise TlsError(f"{path}: not a PEM file (it should begin with '-----BEGIN CERTIFICATE-----'; a DER file "
                       f"converts with: openssl x509 -inform der -in {path.name} -out {path.stem}.pem)")
    if "CERTIFICATE" not in kinds:
        raise TlsError(f"{path}: holds no certificate (it holds: {', '.join(sorted(set(kinds)))})")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise TlsError(f"{path}: a certificate in it is damaged and cannot be read ({exc})") from None


def load_private_key(path: Path) -> PrivateKey:
    data = read_bytes(path, "private key")
    kinds = _pem_kinds(data)
    if not kinds:
        raise TlsError(f"{path}: not a PEM file (it should begin with '-----BEGIN PRIVATE KEY-----'; a DER key "
                       f"converts with: openssl pkey -inform der -in {path.name} -out {path.stem}.pem)")
    if "ENCRYPTED PRIVATE KEY" in kinds or b"Proc-Type: 4,ENCRYPTED" in data:
        raise TlsError(f"{path}: the key is encrypted with a passphrase, and the appliance starts unattended; "
                       f"give it the key without one (openssl pkey -in {path.name} -out plain.key), kept 0600")
    if not any(kind.endswith("PRIVATE KEY") for kind in kinds):
        raise TlsError(f"{path}: holds no private key (it holds: {', '.join(sorted(set(kinds)))})")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise TlsError(f"{path}: the private key in it cannot be read ({exc})") from None
    if not isinstance(key, PrivateKey):
        raise TlsError(f"{path}: a {type(key).__name__} cannot serve TLS; use an RSA or EC key")
    return key


def same_public_key(certificate: x509.Certificate, key: PrivateKey) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


def describe(name: x509.Name) -> str:
    """A name as a person reads it: its common name, else the whole RFC 4514 string."""
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string() or "(empty name)"


def subject_names(certificate: x509.Certificate) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a certificate is for (its subjectAltName; none without one)."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return ([str(n) for n in san.get_values_for_type(x509.DNSName)],
            [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def days_left(certificate: x509.Certificate, now: datetime | None = None) -> float:
    return (certificate.not_valid_after_utc - (now or datetime.now(UTC))).total_seconds() / 86400


def is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    return issued_by(certificate, certificate)


def issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):  # a bad signature, names that differ, an algorithm it lacks
        return False
    return True
