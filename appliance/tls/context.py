"""The server's TLS settings, and the certificate in service, replaced whole on reload.

Each (re)load builds a new SSLContext from the files; new connections take the
current one, connections already open keep the one they started with. A
certificate that fails to load leaves the one in service untouched.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from appliance.tls.pem import TlsError, describe, is_self_signed, load_certificates, subject_names
from appliance.tls.store import CA

log = logging.getLogger("appliance.tls")

# TLS 1.2 with forward secrecy and AEAD only (Mozilla's "intermediate" profile without DHE, whose parameters
# clients negotiate badly); TLS 1.3's suites are all sound and stay OpenSSL's.
TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                 "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")


def server_context(cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise TlsError(f"{cert_file} and {key_file} cannot be served together ({exc.reason or exc}); "
                       "is the key the certificate's?") from None
    except OSError as exc:
        raise TlsError(f"{exc.filename or cert_file}: {exc.strerror}") from None
    if client_ca_file is not None:
        load_certificates(client_ca_file, "client CA")  # a readable sentence for a wrong file
        context.load_verify_locations(cafile=str(client_ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True)
class CertificateFacts:
    """What `tls status`, /tls/status, the console and /metrics say about the certificate in service."""

    names: list[str]
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    serial: str
    sha256: str
    self_signed: bool

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateFacts:
        from cryptography.hazmat.primitives import hashes

        dns, ips = subject_names(certificate)
        return cls(dns + ips, describe(certificate.subject), describe(certificate.issuer),
                   certificate.not_valid_before_utc, certificate.not_valid_after_utc, f"{certificate.serial_number:x}",
                   certificate.fingerprint(hashes.SHA256()).hex(), is_self_signed(certificate))


class ServedCertificate:
    """The certificate in service: the context new connections get, its facts, and the CA offered at /ca.pem."""

    def __init__(self, cert_file: Path, key_file: Path, ca_file: Path | None = None,
                 client_ca_file: Path | None = None, warn_days: int = 30) -> None:
        self.cert_file, self.key_file, self.client_ca_file = cert_file, key_file, client_ca_file
        self.ca_file = ca_file or cert_file.parent / CA
        self.warn_days = warn_days
        self.context, self.facts, self.ca_pem = self._load()  # a failure here stops the start, with its reason

    def _load(self) -> tuple[ssl.SSLContext, CertificateFacts, bytes | None]:
        context = server_context(self.cert_file, self.key_file, self.client_ca_file)
        facts = CertificateFacts.of(load_certificates(self.cert_file)[0])
        ca_pem = self.ca_file.read_bytes() if self.ca_file.is_file() else None
        return context, facts, ca_pem

    def reload(self) -> bool:
        """Load the files again (SIGHUP); on any failure keep serving the certificate in service."""
        try:
            self.context, self.facts, self.ca_pem = self._load()
        except (TlsError, OSError) as exc:
            log.error("TLS certificate not reloaded, the one in service (%s, until %s) stays: %s",
                      self.facts.subject, self.facts.not_after.date(), exc)
            return False
        log.info("TLS certificate loaded: %s (%s), issued by %s, valid until %s", self.facts.subject,
                 ", ".join(self.facts.names), self.facts.issuer, self.facts.not_after.date())
        return True
