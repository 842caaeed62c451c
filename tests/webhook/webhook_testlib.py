"""Helpers shared by the webhook tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

import base64
import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

TOKEN = "test-token-0123456789"
USER, PASSWORD = "engineer", "correct horse battery staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def alert(
    fingerprint: str = "f00d",
    *,
    status: str = "firing",
    starts_at: str = "2026-11-22T01:00:00.123456789Z",
    ends_at: str = "0001-01-01T00:00:00Z",
    alertname: str = "CoreDNSAnomaly",
    instance: str | None = "10.0.0.1:9153",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    labels = {"alertname": alertname, "job": "coredns", "severity": "warning"}
    if instance is not None:
        labels["instance"] = instance
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations
        if annotations is not None
        else {
            "summary": f"CoreDNS {instance} is anomalous",
            "score": "1.42",
            "anomaly_type": "upstream_latency",
            "top_features": "upstream_latency_p99, servfail_ratio",
        },
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=coredns_anomaly_score",
        "fingerprint": fingerprint,
    }


def payload(
    *alerts: dict[str, Any], group_key: str = '{}:{alertname="CoreDNSAnomaly"}'
) -> dict[str, Any]:
    """A version-4 delivery as Alertmanager 0.27 sends it."""
    alerts = alerts or (alert(),)
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "receiver": "coredns-anomaly",
        "status": status,
        "alerts": [copy.deepcopy(a) for a in alerts],
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonLabels": {"job": "coredns"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }


def bcrypt_hash(password: bytes) -> str:
    import bcrypt

    return bcrypt.hashpw(password, bcrypt.gensalt(4)).decode()  # cost 4: fast tests


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI), or skip."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    from coredns_anomaly.loop.tls import openssl_cert

    return openssl_cert(directory, "tls")
