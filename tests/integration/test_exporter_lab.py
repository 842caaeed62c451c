"""The exporter with the shipped bundle against the lab's real CoreDNS (issue 4, Integration).

Two real CoreDNS instances under the lab's traffic, the real `coredns-anomaly exporter` CLI
scraping both over HTTP. A fault on one must raise its `coredns_anomaly` to 1 and let it fall
back to 0 after recovery, while the healthy one stays 0 throughout.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from coredns_anomaly.lab import faults, processes
from coredns_anomaly.lab.lab import Lab, LabSettings
from coredns_anomaly.loop.demo import warm_up_seconds

ROOT = Path(__file__).resolve().parents[2]
FAULT = ("upstream_servfail", 0.8)


def read_series(port: int) -> dict[tuple[str, str], float]:
    """(series name, instance) -> value from the exporter's /metrics."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if "instance" in s.labels:
                out[(s.name, s.labels["instance"])] = s.value
    return out


def wait_for(port: int, cond, timeout: float, timeline: list, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        series = read_series(port)
        timeline.append(
            (
                round(time.monotonic(), 1),
                {
                    k: round(v, 2)
                    for k, v in series.items()
                    if k[0] in ("coredns_anomaly", "coredns_anomaly_score")
                },
            )
        )
        if cond(series):
            return series
        time.sleep(1.0)
    pytest.fail(
        f"timed out after {timeout}s waiting for {what}; top contributions now: "
        f"{top_contributions(port)}; timeline: {timeline[-12:]}"
    )


def top_contributions(port: int, n: int = 5) -> dict[str, list[tuple[str, float]]]:
    """Per instance, the features that drive its score now (for a failure's message)."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, list[tuple[str, float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "coredns_anomaly_feature_contribution":
                out.setdefault(s.labels["instance"], []).append(
                    (s.labels["feature"], round(s.value, 2))
                )
    return {i: sorted(v, key=lambda kv: -kv[1])[:n] for i, v in out.items()}


def test_fault_raises_and_clears_only_its_instance(tmp_path):
    with Lab(
        LabSettings(
            instances=2, step=2.0, seed=41, base_rates=(140.0, 170.0), workdir=tmp_path / "lab"
        )
    ) as lab:
        sick, healthy = lab.instances
        inst = {i.name: i.front.metrics_url.split("//")[1].split("/")[0] for i in lab.instances}
        port = processes.free_port()
        log = tmp_path / "exporter.log"
        proc = processes.spawn(
            [sys.executable, "-m", "coredns_anomaly", "exporter", "--model", str(ROOT / "models/default"),
             "--target", sick.front.metrics_url, "--target", healthy.front.metrics_url,
             "--listen", f"127.0.0.1:{port}", "--state-file", str(tmp_path / "state.json")],
            log_path=log,
        )  # fmt: skip
        timeline: list = []
        try:
            a, b = ("coredns_anomaly", inst[sick.name]), ("coredns_anomaly", inst[healthy.name])
            time.sleep(2)
            wait_for(port, lambda s: a in s and b in s, 60, timeline, "both windows to fill")
            # Each instance first learns its own normal (the bundle's warm-up), as on day one.
            warm = warm_up_seconds(ROOT / "models/default")

            def learned(s: dict) -> bool:
                return all(s.get(("coredns_anomaly_learning", k[1])) == 0 for k in (a, b))

            wait_for(port, learned, warm + 60, timeline, "both baselines to be learned")
            # Calm seconds first: the model must not flag normal lab traffic.
            calm_until = time.monotonic() + 20
            while time.monotonic() < calm_until:
                s = wait_for(port, lambda s: True, 5, timeline, "metrics")
                assert s[a] == 0 and s[b] == 0, f"false alarm before any fault: {timeline[-5:]}"
                time.sleep(1.0)
            faults.apply_fault(sick, *FAULT)
            t_fault = time.monotonic()
            s = wait_for(port, lambda s: s.get(a) == 1, 40, timeline, f"{FAULT[0]} to be flagged")
            delay = time.monotonic() - t_fault
            assert s[b] == 0
            types = [k for k in read_series(port) if k[0] == "coredns_anomaly_type"]
            hold_until = time.monotonic() + 10
            while time.monotonic() < hold_until:  # the healthy one stays calm during the fault
                assert wait_for(port, lambda s: True, 5, timeline, "metrics")[b] == 0
                time.sleep(1.0)
            faults.clear_fault(sick, FAULT[0])
            # the fault's effects leave the model's window, then 30 s of calm end the anomaly
            wait_for(port, lambda s: s.get(a) == 0, 120, timeline, "recovery to 0")
            assert read_series(port)[b] == 0
            print(f"flagged {FAULT[0]} after {delay:.1f}s; type series: {types}")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        assert proc.returncode == 0, log.read_text()[-2000:]
        # Every value the healthy instance had was 0.
        assert all(v.get(b, 0) == 0 for _, v in timeline), timeline
