"""The box's own certificate authority and the server certificate it signs.

ECDSA P-256 throughout: every client the appliance serves accepts it, and it
keeps handshakes cheap. The server certificate lives 365 days, within what
Mozilla's TLS profile and Apple's clients accept (366 and 825 days); the CA
lives ten years, so clients that trust it once keep trusting renewed
certificates. The CA may sign server certificates only (pathlen 0).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.tls.pem import PrivateKey

CA_DAYS = 3650
SERVER_DAYS = 365
BACKDATE = timedelta(minutes=5)  # a client whose clock is a little behind still accepts a fresh certificate


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Inference appliance"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _key_ids(builder: x509.CertificateBuilder, key: PrivateKey, issuer_key: PrivateKey) -> x509.CertificateBuilder:
    return (builder
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False))


def create_ca(common_name: str, key: PrivateKey, days: int = CA_DAYS,
              now: datetime | None = None) -> x509.Certificate:
    now = now or datetime.now(UTC)
    name = _name(common_name)
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    return _key_ids(builder, key, key).sign(key, hashes.SHA256())


def issue_server_certificate(ca: x509.Certificate, ca_key: PrivateKey, key: PrivateKey, dns_names: list[str],
                             ip_addresses: list[str], days: int = SERVER_DAYS,
                             now: datetime | None = None) -> x509.Certificate:
    """A TLS server certificate for ``dns_names`` and ``ip_addresses``, signed by the CA."""
    if not dns_names and not ip_addresses:
        raise ValueError("a server certificate needs at least one name or address")
    now = now or datetime.now(UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    builder = (x509.CertificateBuilder()
               .subject_name(_name(dns_names[0] if dns_names else ip_addresses[0]))
               .issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=False, crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return _key_ids(builder, key, ca_key).sign(ca_key, hashes.SHA256())


def issue_client_certificate(ca: x509.Certificate, ca_key: PrivateKey, key: PrivateKey, common_name: str,
                             days: int = SERVER_DAYS, now: datetime | None = None) -> x509.Certificate:
    """A TLS client certificate (mTLS: ``tls_client_ca_file``) for a caller named ``common_name``."""
    now = now or datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - BACKDATE).not_valid_after(now + timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    return _key_ids(builder, key, ca_key).sign(ca_key, hashes.SHA256())
