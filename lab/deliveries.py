"""Alertmanager-shaped deliveries at a webhook, open loop: the load of the webhook's tests and
benchmarks (bench/webhook_load.py, webhook_crash.py, webhook_hostile.py).

Open loop: delivery i is due at t0 + i/rate whatever the server does, so a slow server shows up
as latency (measured from the due time, no coordinated omission) rather than as a lower rate.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from .webhook_server import TOKEN


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
    """One alert as Alertmanager 0.27 delivers it (our CoreDNSAnomaly shape by default)."""
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


def make_payload(run: str, i: int, alerts: int = 2, base: datetime | None = None) -> bytes:
    """A realistic delivery for the load benches; unique per (run, i) so stores can be checked."""
    base = base or datetime(2026, 1, 1, tzinfo=timezone.utc)
    starts = (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    items = [
        alert(
            f"{run}-{i:x}-{j}",
            starts_at=starts,
            instance=f"10.0.{j}.{i % 250}:9153",
            annotations={
                "summary": f"CoreDNS 10.0.{j}.{i % 250}:9153 behaves anomalously",
                "description": "The anomaly score has been above 1 for 5 minutes.",
                "score": f"{1 + (i % 97) / 50:.3f}",
                "anomaly_type": "upstream_latency",
                "top_features": "upstream_latency_p99, servfail_ratio, cache_miss_ratio",
            },
        )
        for j in range(alerts)
    ]
    return json.dumps(payload(*items, group_key=f"bench:{run}:{i}")).encode()


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    status_errors: dict[int, int] = field(default_factory=dict)
    conn_errors: int = 0
    latencies: list[float] = field(default_factory=list)  # from the due time (seconds)
    service: list[float] = field(default_factory=list)  # from the actual send
    acked: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    elapsed: float = 0.0

    def summary(self) -> dict:
        lat = sorted(self.latencies)
        svc = sorted(self.service)
        return {
            "sent": self.sent,
            "ok": self.ok,
            "errors_http": {str(k): v for k, v in sorted(self.status_errors.items())},
            "errors_connection": self.conn_errors,
            "elapsed_s": round(self.elapsed, 2),
            "ok_per_s": round(self.ok / self.elapsed, 1) if self.elapsed else 0,
            "latency_ms": _quantiles(lat),
            "service_latency_ms": _quantiles(svc),
        }


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {}

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))] * 1000, 2)

    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999), "max": q(1.0)}


class Client:
    """A minimal keep-alive HTTP/1.1 POST client.

    http.client parses headers with the email package and costs ~0.5 ms of CPU per request;
    on a 2-core box that CPU is taken from the server under test. This one sends prebuilt
    headers and reads Content-Length bytes back, like Alertmanager's Go client, cheaply.
    """

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        token: str,
        timeout: float = 15,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.addr = (host, port)
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: webhook-bench\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
        ).encode()
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.sock: socket.socket | None = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def post(self, body: bytes) -> int:
        if self.sock is None:
            sock = socket.create_connection(self.addr, timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.addr[0])
            self.sock = sock
        sock = self.sock
        sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the response")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-response")
            rest += chunk
        if close:
            self.close()
        return status


def run_load(
    url: str,
    *,
    rate: float,
    duration: float,
    token: str = TOKEN,
    concurrency: int = 32,
    payload: Callable[[int], bytes],
    indices: list[int] | None = None,
    stop: threading.Event | None = None,
    timeout: float = 15,
    ssl_context: ssl.SSLContext | None = None,
) -> LoadResult:
    """Send payload(i) for i = 0, 1, ... at `rate` per second for `duration` seconds (or `indices`)."""
    parts = urlsplit(url)
    host, port = (
        parts.hostname or "127.0.0.1",
        parts.port or (443 if parts.scheme == "https" else 80),
    )
    path = parts.path or "/webhook"
    result = LoadResult()
    lock = threading.Lock()
    tickets = itertools.count()
    stop = stop or threading.Event()
    t0 = time.perf_counter() + 0.05
    total = len(indices) if indices is not None else int(rate * duration)

    def worker() -> None:
        conn = Client(host, port, path, token, timeout=timeout, ssl_context=ssl_context)
        while not stop.is_set():
            n = next(tickets)
            if n >= total:
                break
            i = indices[n] if indices is not None else n
            due = t0 + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            body = payload(i)
            sent = time.perf_counter()
            try:
                status = conn.post(body)
            except (OSError, ValueError, IndexError):
                conn.close()
                with lock:
                    result.sent += 1
                    result.conn_errors += 1
                    result.failed.add(i)
                time.sleep(0.005)
                continue
            done = time.perf_counter()
            with lock:
                result.sent += 1
                if 200 <= status < 300:
                    result.ok += 1
                    result.acked.add(i)
                    result.latencies.append(done - due)
                    result.service.append(done - sent)
                else:
                    result.status_errors[status] = result.status_errors.get(status, 0) + 1
                    result.failed.add(i)
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - t0
    return result
