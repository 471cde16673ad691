"""The running appliance's shared parts, made once at start: what every service and the batch runner reach.

The gateway's FastAPI app carries it as ``app.state``; the batch runner and the
services get it through each ``Call``. The catalogue is swapped in place on a
reload, so everything reads it from here.
"""

from __future__ import annotations

from typing import Any

from appliance.accounting.service import Accounting
from appliance.catalogue import Catalogue
from appliance.config import Settings
from appliance.db.keys import KeyStore
from appliance.db.reserve import DiskReserve
from appliance.media.store import MediaStore
from appliance.serving.admission import Admission
from appliance.supervisor.supervisor import Supervisor
from appliance.tenancy.audit import AuditLog
from appliance.tenancy.caller import Directory


class Runtime:
    def __init__(self, settings: Settings, catalogue: Catalogue, supervisor: Supervisor, keys: KeyStore,
                 accounting: Accounting) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self.supervisor = supervisor
        self.keys = keys
        self.accounting = accounting
        self.directory = Directory(keys)  # tenants, users, and the caller of each key
        self.audit = AuditLog(keys.engine)
        self._media: MediaStore | None = None
        self.disk_reserve = DiskReserve(settings.state_dir)
        self.admission = Admission(enabled=settings.fair_share)
        # Kept here by the floors above, which own them: the batch stores and runner, the gateway's rate limiter,
        # the Responses API's store and jobs, background tasks referenced until done.
        self.batch_stores: Any = None
        self.batch_runner: Any = None
        self.rate_limiter: Any = None
        self.responses: Any = None  # serving/response_jobs.py's ResponseJobs: stored responses, background jobs
        self.tls: Any = None  # the certificate in service (appliance.tls.context.ServedCertificate) over HTTPS
        self.tasks: set[Any] = set()

    @property
    def media(self) -> MediaStore:
        """The media store (images, batch results), made on first use on the state DB."""
        if self._media is None:
            settings = self.settings
            self._media = MediaStore(self.keys.engine, settings.media_dir, settings.media_ttl_s,
                                     max_bytes=settings.max_media_bytes)
        return self._media
