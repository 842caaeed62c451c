"""`coredns-anomaly label`: existing rules label history, evaluated by the real Prometheus, and a
live Prometheus's ALERTS become weak labels.

The ALERTS case backfills the ALERTS series into a real Prometheus with promtool: Prometheus
writes ALERTS only while it evaluates rules in real time, and a test cannot wait the hours of
history it reads (the query, matching and scoping under test are the real ones).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coredns_anomaly.cli import main as cli
from coredns_anomaly.lab import prometheus
from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.webhook.labels import read_label_file

from .conftest import require
from .test_promql_baseline import END, JUMP, STEP, T0, synthetic

pytestmark = pytest.mark.integration

RULES = """groups:
- name: existing
  rules:
  - alert: CoreDNSServfailShareHigh
    expr: |
      sum by (instance) (rate(coredns_dns_responses_total{rcode="SERVFAIL"}[2m]))
        / sum by (instance) (rate(coredns_dns_responses_total[2m])) > 0.05
    for: 2m
  - alert: CoreDNSFleetErrors
    expr: sum(rate(coredns_dns_responses_total{rcode="SERVFAIL"}[2m])) > 1
  - alert: Watchdog
    expr: vector(1)
"""


def test_a_rule_file_labels_a_datasets_history_per_instance(tmp_path, capsys):
    require("prometheus")
    require("promtool")
    data = tmp_path / "ds"
    ds_mod.write(synthetic(), data)
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    out = tmp_path / "labels.csv"
    rc = cli(
        ["label", "--rules", str(rules), "--dataset", str(data), "--out", str(out),
         "--matchers", 'alertname=~"CoreDNS.*"', "--report", str(tmp_path / "report.md")]
    )  # fmt: skip
    assert rc == 0
    recs = read_label_file(out)
    servfail = [r for r in recs if r.alertname == "CoreDNSServfailShareHigh"]
    assert [r.instance for r in servfail] == ["sick"]  # one episode, on the sick one only
    (r,) = servfail
    assert (r.source, r.verdict, r.anomaly_class) == ("weak", "anomaly", r.alertname)
    start, end = r.start.timestamp() - T0, r.end.timestamp() - T0
    assert JUMP < start < JUMP + 5 * 60 and END - 60 < end < END + 5 * 60
    # a fleet-wide sum is evaluated per instance, so it names the sick instance only too
    assert {r.instance for r in recs if r.alertname == "CoreDNSFleetErrors"} == {"sick"}
    assert not any(r.alertname == "Watchdog" for r in recs)  # not selected
    report = (tmp_path / "report.md").read_text()
    assert "| CoreDNSServfailShareHigh | 1 | 1 |" in report and "Watchdog" in report


def test_alerts_of_a_live_prometheus_become_weak_labels(tmp_path, capsys):
    require("prometheus")
    require("promtool")
    om = tmp_path / "alerts.om"
    lines = ["# TYPE ALERTS gauge"]
    series = {
        'alertname="CoreDNSLatencyHigh",alertstate="firing",instance="dns-a:9153"': range(20, 40),
        'alertname="CoreDNSErrorsHigh",alertstate="firing"': range(10, 50),  # no instance
        'alertname="Watchdog",alertstate="firing",instance="dns-a:9153"': range(0, 60),
        'alertname="CoreDNSAnomaly",alertstate="firing",instance="dns-b:9153"': range(5, 9),
    }
    for labels, ks in series.items():
        lines += [f"ALERTS{{{labels}}} 1 {T0 + k * STEP:.0f}" for k in ks]
    om.write_text("\n".join(lines) + "\n# EOF\n")
    tsdb = tmp_path / "tsdb"
    prometheus.backfill_openmetrics(om, tsdb)
    out = tmp_path / "labels.csv"
    with prometheus.serving(tsdb, tmp_path) as base:
        rc = cli(
            ["label", "--prometheus", base, "--start", str(T0), "--end", str(T0 + 60 * STEP),
             "--step", str(STEP), "--out", str(out)]
        )  # fmt: skip
    assert rc == 0
    (r,) = read_label_file(out)  # Watchdog, our own alert and the fleet-wide one label nothing
    assert (r.instance, r.alertname, r.source) == ("dns-a:9153", "CoreDNSLatencyHigh", "weak")
    assert r.start.timestamp() == pytest.approx(T0 + 20 * STEP, abs=STEP)
    # A live Prometheus marks a resolved alert's series stale at once; backfilled samples
    # carry no staleness marker, so the query sees the last one for its 5-minute lookback.
    assert T0 + 39 * STEP <= r.end.timestamp() <= T0 + 39 * STEP + 300 + STEP
    printed = capsys.readouterr().out
    assert "1 alert series named no instance" in printed


def test_label_needs_a_source(tmp_path, capsys):
    assert cli(["label", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--rules FILE --dataset DIR" in capsys.readouterr().err
    assert not Path(tmp_path / "x.csv").exists()
