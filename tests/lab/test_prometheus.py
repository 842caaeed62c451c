"""lab/prometheus.py starts the real Prometheus, and the project's one API client
(exporter/promclient.py) reads every endpoint the roles use from it, POST and GET alike: series,
instant and range queries (chunked under the points limit), alerts (an endpoint that answers
GET only), and errors with Prometheus's own words."""

from __future__ import annotations

import time

import pytest

from coredns_anomaly.exporter.promclient import MAX_POINTS, PrometheusAPI, PrometheusAPIError
from coredns_anomaly.lab import processes, prometheus

pytestmark = pytest.mark.integration

RULES = """groups:
- name: always
  rules:
  - alert: AlwaysFiring
    expr: vector(1)
"""


@pytest.mark.parametrize("post", [True, False], ids=["post", "get"])
def test_the_one_client_reads_a_real_prometheus(tmp_path, post):
    port = processes.free_port()
    (tmp_path / "rules.yml").write_text(RULES)
    config = prometheus.scrape_config([f"127.0.0.1:{port}"], interval="1s", job="prometheus")
    config["rule_files"] = [str(tmp_path / "rules.yml")]
    with (
        prometheus.start(tmp_path, config, port=port) as prom,
        PrometheusAPI(prom.url, timeout=30, post=post) as api,
    ):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            alerts = api.alerts()
            up = api.query('up{job="prometheus"}', time.time())
            if alerts and up:
                break
            time.sleep(0.2)
        assert [(a["labels"]["alertname"], a["state"]) for a in alerts] == [
            ("AlwaysFiring", "firing")
        ]
        assert up[0]["value"][1] == "1"
        now = time.time()
        names = {s["__name__"] for s in api.series('{job="prometheus"}', now - 60, now)}
        assert "up" in names
        # 25,001 steps of 1 ms: three requests, every step answered once
        n = 2 * MAX_POINTS + 5001
        result = api.query_range("vector(1)", now - 30, now - 30 + (n - 1) * 0.001, 0.001)
        assert len(result) == 3
        assert sum(len(s["values"]) for s in result) == n
        with pytest.raises(PrometheusAPIError, match=r"HTTP 400: bad_data: .*parse error"):
            api.query("sum(", now)
