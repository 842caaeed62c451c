"""The demo's loop, shorter, as a test: real CoreDNS, exporter, Prometheus with the generated
rules, Alertmanager and the webhook under gunicorn, all on loopback (issue 7)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coredns_anomaly.loop.demo import DemoSettings, run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_fault_travels_the_whole_loop(tmp_path):
    report = run_demo(
        DemoSettings(
            tmp_path / "demo", ROOT / "models/default", faults=(("upstream_servfail", 0.8),),
            duration=20.0, gap=100.0, calm=6.0,
        ),
        say=lambda *_: None,
    )  # fmt: skip
    (ep,) = report["episodes"]
    # Each stage reacts, in order, within a few model steps of the fault.
    assert ep["first_anomaly"] is not None and ep["first_anomaly"] <= 10, ep
    assert ep["alert_firing"] is not None and ep["alert_firing"] >= ep["first_anomaly"], ep
    assert ep["delivered"] is not None and ep["delivered"] <= ep["alert_firing"] + 10, ep
    # ... and recovers after it: the anomaly clears and Alertmanager sends the resolution.
    assert ep["anomaly_cleared"] is not None and ep["anomaly_cleared"] >= ep["fault_duration"], ep
    assert ep["resolved_delivered"] is not None, ep
    assert report["false_alarms"] == [], report["false_alarms"]
    # The webhook stored the alert with what its page shows: score, type and top features.
    db = sqlite3.connect(tmp_path / "demo" / "webhook.db")
    (annotations,) = db.execute(
        "SELECT annotations FROM occurrences WHERE alertname = 'CoreDNSAnomaly' LIMIT 1"
    ).fetchone()
    assert '"score"' in annotations and '"anomaly_type"' in annotations, annotations
    assert '"top_features"' in annotations, annotations
    assert (tmp_path / "demo" / "timeline.png").stat().st_size > 10_000
    assert "upstream_servfail" in (tmp_path / "demo" / "report.md").read_text()
