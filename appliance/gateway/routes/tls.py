"""GET /ca.pem and GET /tls/status: what a client needs to trust this box, and when its certificate expires.

No key: the CA certificate is public (clients need it before they can call
safely), and so is the certificate the server shows every client anyway. Not
operations of the API, so left out of /openapi.json like the console's files.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from appliance.gateway.errors import ApiError, ErrorCode
from appliance.gateway.routing import api_router
from appliance.tls.context import ServedCertificate
from appliance.tls.status import served_status

router = api_router(include_in_schema=False)


@router.get("/ca.pem")
async def ca_certificate(request: Request) -> Response:
    """The CA certificate to add to a client's trust store (curl --cacert, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)."""
    certificate: ServedCertificate | None = getattr(request.app.state, "tls", None)
    if certificate is None:
        raise ApiError(ErrorCode.NOT_FOUND, "This appliance serves plain HTTP; it has no certificate authority to "
                                            "download.")
    if certificate.ca_pem is None:
        raise ApiError(ErrorCode.NOT_FOUND, "This appliance's certificate comes from a CA it does not offer for "
                                            "download (no ca.pem beside its certificate); your clients may trust "
                                            "it already.")
    return Response(certificate.ca_pem, media_type="application/x-pem-file",
                    headers={"Content-Disposition": 'attachment; filename="appliance-ca.pem"',
                             "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})


@router.get("/tls/status")
async def tls_status(request: Request) -> JSONResponse:
    """The certificate in service: names, issuer, expiry and days left (the console warns from it)."""
    status = served_status(getattr(request.app.state, "tls", None))
    return JSONResponse(status.model_dump(mode="json"), headers={"Cache-Control": "no-cache"})
