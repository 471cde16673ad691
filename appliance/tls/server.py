"""uvicorn on the appliance's own listeners: HTTPS through TlsListener, and the plain-HTTP redirect beside it.

uvicorn's Server does the rest as it always does (lifespan, connection
tracking, graceful shutdown); only where connections come from changes.
"""

from __future__ import annotations

import functools
import socket
from typing import Any

import uvicorn

from appliance.tls.context import ServedCertificate
from appliance.tls.listener import Refusal, TlsListener
from appliance.tls.redirect import start_redirect


class HttpsServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, certificate: ServedCertificate, https: socket.socket,
                 http: socket.socket | None, public_base_url: str | None, refuse: Refusal) -> None:
        super().__init__(config)
        self.certificate, self.https, self.http = certificate, https, http
        self.public_base_url, self.refuse = public_base_url, refuse

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan, and no listener of uvicorn's own
        if self.should_exit or not self.started:
            return
        config = self.config
        create_protocol = functools.partial(config.http_protocol_class, config=config,  # as uvicorn's startup does
                                            server_state=self.server_state, app_state=self.lifespan.state)
        listener = TlsListener(self.https, self.certificate, create_protocol, self.refuse)
        listener.start()
        servers: list[Any] = [listener]
        https_port = self.https.getsockname()[1]
        if self.http is not None:
            servers.append(await start_redirect(self.http, https_port, self.public_base_url, self.refuse))
        self.servers = servers
        where = [f"https://{_address(self.https)}"]
        if self.http is not None:
            where.append(f"http://{_address(self.http)} (redirect)")
        uvicorn.server.logger.info("serving on %s", ", ".join(where))


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

