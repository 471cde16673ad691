"""What is said about the certificate in service: `appliance tls status`, GET /tls/status and the console."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from appliance.tls.context import CertificateFacts, ServedCertificate


class TlsStatus(BaseModel):
    https: bool = Field(description="whether this appliance serves HTTPS")
    names: list[str] = Field(default_factory=list, description="host names and addresses the certificate is for")
    subject: str | None = None
    issuer: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    days_left: float | None = Field(None, description="days until the certificate expires (negative: expired)")
    warn_days: int | None = Field(None, description="the console warns from this many days before expiry")
    expiring: bool = Field(False, description="days_left is at most warn_days")
    self_signed: bool = False
    sha256: str | None = Field(None, description="the certificate's SHA-256 fingerprint, to compare by hand")
    ca_url: str | None = Field(None, description="where the CA certificate to trust is downloaded (/ca.pem)")
    client_certificates_required: bool = Field(False, description="mTLS: callers must present a certificate")


def status_of(facts: CertificateFacts, warn_days: int, ca_available: bool = False, mtls: bool = False,
              now: datetime | None = None) -> TlsStatus:
    days = round((facts.not_after - (now or datetime.now(UTC))).total_seconds() / 86400, 4)
    return TlsStatus(https=True, names=facts.names, subject=facts.subject, issuer=facts.issuer,
                     not_before=facts.not_before, not_after=facts.not_after, days_left=days, warn_days=warn_days,
                     expiring=days <= warn_days, self_signed=facts.self_signed, sha256=facts.sha256,
                     ca_url="/ca.pem" if ca_available else None, client_certificates_required=mtls)


def served_status(certificate: ServedCertificate | None) -> TlsStatus:
    if certificate is None:
        return TlsStatus(https=False)
    return status_of(certificate.facts, certificate.warn_days, certificate.ca_pem is not None,
                     certificate.client_ca_file is not None)
