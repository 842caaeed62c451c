"""The Prometheus API client's bearer auth, chunking and error messages.

A stand-in HTTP server is used here, and only here, because Prometheus itself has no bearer-token
auth (it is the job of Thanos/Mimir gateways and auth proxies in front of it); everything else
collect does is tested against the real Prometheus in tests/integration.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from coredns_anomaly.exporter.promclient import MAX_POINTS
from coredns_anomaly.exporter.scrape import HttpOptions
from coredns_anomaly.training import collect

TOKEN = "tok-123"


class FakeGateway(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        FakeGateway.calls.append({"path": urlparse(self.path).path, **q})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        if self.path.startswith("/api/v1/series"):
            data = [
                {"__name__": "coredns_dns_requests_total", "instance": "a:9153", "job": "coredns"}
            ]
        else:
            start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
            n = int((end - start) / step) + 1
            values = [[start + i * step, str(i)] for i in range(n)]
            data = {
                "resultType": "matrix",
                "result": [
                    {
                        "metric": {
                            "__name__": "coredns_dns_requests_total",
                            "instance": "a:9153",
                            "job": "coredns",
                            "proto": "udp",
                        },
                        "values": values,
                    }
                ],
            }
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def gateway():
    FakeGateway.calls = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeGateway)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_bearer_token_and_chunks_under_the_points_limit(gateway):
    api = collect.client(gateway, HttpOptions(bearer_token=TOKEN))
    steps = 25_000
    ds = collect.collect(api, '{job="coredns"}', 0.0, float(steps - 1), 1.0)
    ranges = [c for c in FakeGateway.calls if c["path"] == "/api/v1/query_range"]
    assert len(ranges) == 3  # 25,000 points in chunks of at most 10,000
    assert all(float(c["end"]) - float(c["start"]) < MAX_POINTS for c in ranges)
    req = ds.samples[ds.samples["name"] == "coredns_dns_requests_total"]
    assert len(req) == steps and req["timestamp"].is_monotonic_increasing
    assert set(ds.samples["name"]) == {"coredns_dns_requests_total", "up"}
    assert req["labels"].iloc[0] == 'proto="udp"'


def test_missing_token_is_reported_as_auth_problem(gateway):
    with pytest.raises(collect.CollectError, match="HTTP 401.*bearer token"):
        collect.collect(collect.client(gateway), '{job="coredns"}', 0.0, 10.0, 1.0)


def test_selector_and_time_parsing():
    assert collect.with_name('{job="x"}', "up") == '{__name__="up",job="x"}'
    assert collect.with_name("{}", "up") == '{__name__="up"}'
    with pytest.raises(ValueError, match="selector must look like"):
        collect.with_name('job="x"', "up")
    assert collect.parse_time("2026-01-01T00:00:00Z") == 1767225600.0
    assert collect.parse_time("1767225600") == 1767225600.0
    with pytest.raises(ValueError, match="neither RFC 3339"):
        collect.parse_time("yesterday")
