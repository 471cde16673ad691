"""Prometheus metrics of the gateway and its workers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "appliance_requests_total", "Requests answered, by route, model and HTTP status.",
    ["route", "model", "status"], registry=REGISTRY,
)
LATENCY = Histogram(
    "appliance_request_duration_seconds", "Time from request to the end of the answer, by route and model.",
    ["route", "model"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
WORKER_STATE = Gauge(
    "appliance_worker_state", "How many of each model's worker processes (replicas) are in each state.",
    ["model", "state"], registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "appliance_worker_restarts_total", "Worker processes restarted after they died or stopped answering.",
    ["model"], registry=REGISTRY,
)
BACKEND_UP = Gauge(
    "appliance_backend_up", "1 while a remote backend of a model passes its health checks.",
    ["model", "backend"], registry=REGISTRY,
)
USAGE_UNITS = Counter(
    "appliance_usage_units_total", "Units used by inference requests, by model and unit (tokens_in, tokens_out, "
    "images, audio_seconds_in, audio_seconds_out, characters).",
    ["model", "unit"], registry=REGISTRY,
)
BATCH_LINES = Counter(
    "appliance_batch_lines_total",
    "Batch lines this gateway finished, by outcome (done, failed), and the runs it stopped to yield to live "
    "traffic (yielded: those lines were queued again).",
    ["state"], registry=REGISTRY,
)
ADMISSION_WAITING = Gauge(
    "appliance_admission_waiting", "Live calls waiting for a slot of a full model, by model and tenant.",
    ["model", "tenant"], registry=REGISTRY,
)
ADMISSION_ADMITTED = Counter(
    "appliance_admission_admitted_total", "Live calls admitted to a model, by model, tenant and how (direct: it "
    "had room; queued: after waiting in fair order).", ["model", "tenant", "how"], registry=REGISTRY,
)
ADMISSION_WAIT = Histogram(
    "appliance_admission_wait_seconds", "How long live calls waited for a slot of a full model, by model and tenant.",
    ["model", "tenant"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
BATCH_QUEUED = Gauge(
    "appliance_batch_lines_queued", "Batch lines waiting to run, across every batch in the state DB.",
    registry=REGISTRY,
)


class TlsExpiry(Collector):
    """Days until the TLS certificate in service expires, computed at each scrape (a set value would go stale)."""

    def __init__(self) -> None:
        self.certificate: Any = None  # appliance.tls.context.ServedCertificate, set by `appliance serve`

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.certificate is None:
            return
        family = GaugeMetricFamily("appliance_tls_certificate_days_left",
                                   "Days until the TLS certificate in service expires (negative once expired).")
        not_after = self.certificate.facts.not_after
        family.add_metric([], (not_after - datetime.now(UTC)).total_seconds() / 86400)
        yield family


TLS_EXPIRY = TlsExpiry()
REGISTRY.register(TLS_EXPIRY)
