"""coredns-anomaly fit end to end on a slice of data/lab-v1: a loadable bundle and a report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB1, LAB2 = ROOT / "data/lab-v1", ROOT / "data/lab-v2"


@pytest.mark.integration
def test_fit_on_a_lab_slice_writes_a_bundle_the_exporter_loads(tmp_path):
    from coredns_anomaly.exporter.bundle import load_bundle
    from coredns_anomaly.training.fit import FitConfig, fit, load_series
    from coredns_anomaly.training.fit_report import PNGS

    fleet = [s.slice(0, 900) for s in load_series([LAB1])[:3]]  # 3 instances x 30 min at 2 s
    cfg = FitConfig(
        epochs=2, min_hours=0.25, min_healthy_run=24, train_fraction=0.5, lab_datasets=(LAB2,)
    )
    summary = fit(fleet, cfg, tmp_path / "bundle", tmp_path / "report")

    assert summary["step_seconds"] == pytest.approx(2.0, abs=0.01)
    assert summary["threshold"] > 0
    assert summary["tail"]["method"] in ("gpd", "exponential", "max_rule")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.threshold == pytest.approx(summary["threshold"])
    assert (tmp_path / "bundle" / "keras" / "detector.json").is_file()
    meta = json.loads((tmp_path / "bundle" / "model.json").read_text())
    assert meta["fit"]["budget_per_day"] == 1.0 and meta["decision_debounce_steps"] == 1

    report = tmp_path / "report"
    md = (report / "fit-report.md").read_text()
    assert "threshold" in md and "Recall on injected lab faults" in md
    for png in PNGS:
        assert (report / png).stat().st_size > 5000
    js = json.loads((report / "fit-report.json").read_text())
    inj = js["injected"]
    assert inj["episodes"], "no signature could be injected into the slice"
    assert set(inj["per_class"]) <= {
        "upstream_latency", "upstream_servfail", "upstream_loss", "query_flood",
        "random_subdomain", "cache_thrash", "cpu_starvation", "tcp_fallback", "misconfig_refused",
    }  # fmt: skip
    assert js["labelled"]["episodes"] > 0  # the lab's own labels measured too

    # fit, then rules: a fit bundle has no test split, so the rules state the median delay
    # measured on the injected lab faults instead (they refused such a bundle before).
    from coredns_anomaly.cli import main as cli

    rules = tmp_path / "rules"
    assert cli(["rules", "generate", "--model", str(tmp_path / "bundle"), "--out", str(rules)]) == 0
    text = (rules / "coredns-anomaly.rules.yml").read_text()
    delay = meta["fit"]["injected_median_delay_steps"]
    assert f"injected-fault median delay {(delay or 0.0):g} steps" in text
    assert "alert: CoreDNSAnomaly" in text


@pytest.mark.integration
def test_fit_cli_on_a_dataset_reports_a_too_short_fleet(tmp_path, capsys):
    from coredns_anomaly.cli import main

    rc = main(["fit", "--dataset", str(LAB1), "--out", str(tmp_path / "b"), "--epochs", "1"])
    assert rc == 2  # 35 min per instance < the default 2 h
    err = capsys.readouterr().err
    assert "too few steps" in err and "0.58 h" in err


@pytest.mark.integration
def test_label_file_marks_steps_anomalous_for_fit(tmp_path):
    from datetime import datetime, timezone

    from coredns_anomaly.training.fit import healthy_mask, load_series
    from coredns_anomaly.training.series import NORMAL, attach_baseline

    plain = load_series([LAB1])[0]
    a, b = plain.times[400], plain.times[460]
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    f = tmp_path / "labels.csv"
    f.write_text(
        "instance,start,end,verdict,class,source\n"
        f"{plain.instance},{iso(a)},{iso(b)},anomaly,upstream_latency,verified\n"
    )
    s = load_series([LAB1], [f])[0]
    attach_baseline(s)
    inside = (s.times > a + 2) & (s.times < b)
    assert (s.labels[inside] != NORMAL).all()
    assert not healthy_mask(s)[inside].any()  # kept out of training and calibration
