"""The webhook's own metrics, correct under several gunicorn workers.

With PROMETHEUS_MULTIPROC_DIR set (the shipped gunicorn.conf.py sets and wipes it before any
worker starts) every worker writes its values to files there and /metrics merges them; without
it (Flask's dev server, tests) the default registry is used. prometheus_client decides the mode
when it is first imported, so this module must be imported only after that variable is set.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from coredns_anomaly.contracts.names import VERDICTS as VERDICT_NAMES

NS = "coredns_anomaly_webhook"
REJECT_REASONS = (
    "unauthorized",
    "cross_site",
    "unsupported_media_type",
    "too_large",
    "invalid_json",
    "invalid_schema",
    "unstorable",
)

DELIVERIES = Counter(
    f"{NS}_deliveries_received_total", "Webhook deliveries received (any outcome)."
)
DELIVERIES_STORED = Counter(
    f"{NS}_deliveries_stored_total", "Deliveries acknowledged after a durable commit."
)
DELIVERIES_DUPLICATE = Counter(
    f"{NS}_deliveries_duplicate_total", "Deliveries identical to one already stored (retries)."
)
REJECTED = Counter(f"{NS}_deliveries_rejected_total", "Deliveries refused with 4xx.", ["reason"])
ALERTS_RECEIVED = Counter(
    f"{NS}_alerts_received_total", "Alerts in accepted deliveries.", ["status"]
)
ALERTS_STORED = Counter(
    f"{NS}_alerts_stored_total", "Alerts newly committed to the store.", ["status"]
)
ALERTS_DUPLICATE = Counter(
    f"{NS}_alerts_duplicate_total",
    "Alerts already stored (same groupKey, fingerprint, status, startsAt).",
)
ALERTS_UPDATED = Counter(
    f"{NS}_alerts_updated_total",
    "Alerts already stored whose repeat carried other annotations (stored annotations updated).",
)
ALERTS_REFIRED = Counter(
    f"{NS}_alerts_refired_total",
    "Alerts firing again after their resolve with the same startsAt (stored as a re-fire).",
)
ALERTS_TRUNCATED = Counter(
    f"{NS}_alerts_truncated_total", "Alerts Alertmanager left out of deliveries (truncatedAlerts)."
)
STORE_ERRORS = Counter(
    f"{NS}_store_errors_total",
    "Deliveries the store could not commit: 503 (retried) or 422 (unstorable, dropped).",
)
VERDICTS = Counter(f"{NS}_verdicts_total", "Verdicts recorded on the feedback page.", ["verdict"])
LATENCY = Histogram(
    f"{NS}_delivery_duration_seconds",
    "Time to handle a delivery, from request to response (including the commit).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

for _reason in REJECT_REASONS:
    REJECTED.labels(_reason)
for _status in ("firing", "resolved"):
    ALERTS_RECEIVED.labels(_status)
    ALERTS_STORED.labels(_status)
for _verdict in (*VERDICT_NAMES, "cleared"):
    VERDICTS.labels(_verdict)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render() -> tuple[bytes, str]:
    """The exposition body and content type, merged over all workers when multiprocess."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
