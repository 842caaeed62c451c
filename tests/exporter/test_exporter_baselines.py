"""The exporter learns each CoreDNS's own normal: it says so while learning (and never alarms
then), reports features whose metrics a page lacks, and keeps baselines across a restart."""

from __future__ import annotations

import json
import logging

import numpy as np
from exporter_testlib import Timeline, metrics_text, parse_metrics, prefill, series, value

from coredns_anomaly.exporter.engine import Observation
from coredns_anomaly.exporter.features import FEATURE_NAMES, FEATURES


def _steps(x, clock, tl: Timeline, inst: str, start: int, n: int) -> None:
    for i in range(start, start + n):
        clock.now += x.engine.bundle.step_seconds
        x.engine.step([Observation(inst, clock.now, text=tl.page(i))])


def test_a_new_instance_is_learning_scored_but_never_anomalous(
    make_exporter, clock, bundle, caplog
):
    """A fault from the first minute on: the score is published, the verdict stays 0."""
    caplog.set_level(logging.INFO, "coredns_anomaly.exporter")
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl = "10.1.0.1:9153", Timeline("upstream_latency")
    _steps(x, clock, tl, inst, 0, 3 * bundle.window)
    st = x.engine.states[inst]
    m = parse_metrics(metrics_text(x))
    assert st.learning and value(m, "coredns_anomaly_learning", instance=inst) == 1.0
    assert value(m, "coredns_anomaly_score", instance=inst) is not None  # for inspection
    assert value(m, "coredns_anomaly", instance=inst) == 0.0
    assert any("learning this instance's normal" in r.getMessage() for r in caplog.records)


def test_learning_ends_after_the_warm_up_and_is_logged(make_exporter, clock, bundle, caplog):
    caplog.set_level(logging.INFO, "coredns_anomaly.exporter")
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl, spec = "10.1.0.2:9153", Timeline("normal"), bundle.baseline
    n = int((spec.warmup_seconds + 3 * spec.sample_every) / bundle.step_seconds)
    _steps(x, clock, tl, inst, 0, n)
    assert not x.engine.states[inst].learning
    assert value(parse_metrics(metrics_text(x)), "coredns_anomaly_learning", instance=inst) == 0.0
    assert any("baseline learned" in r.getMessage() for r in caplog.records)


def test_a_warm_instance_flags_a_fault(make_exporter, clock, bundle):
    """After warm-up on healthy pages, the same fault as above is an anomaly."""
    x = make_exporter(targets=["127.0.0.1:1"])
    inst = "10.1.0.3:9153"
    tl = Timeline("upstream_latency")
    served = [0]
    prefill(x, clock, {inst: (tl, served)}, 3 * bundle.window)
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_learning", instance=inst) == 0.0
    assert value(m, "coredns_anomaly_score", instance=inst) >= 1.0
    assert value(m, "coredns_anomaly", instance=inst) == 1.0


def test_features_without_source_metrics_are_reported(make_exporter, clock, bundle, caplog):
    caplog.set_level(logging.WARNING, "coredns_anomaly.exporter")
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl = "10.1.0.4:9153", Timeline("normal")
    for i in range(3):  # a CoreDNS without the cache plugin: no coredns_cache_* at all
        clock.now += bundle.step_seconds
        page = "\n".join(
            ln
            for ln in tl.page(i).splitlines()
            if "coredns_cache_" not in ln and 'name="cache"' not in ln
        )
        x.engine.step([Observation(inst, clock.now, text=page)])
    want = {f.name for f in FEATURES if any(s.startswith("cache_") for s in f.sources)}
    got = series(parse_metrics(metrics_text(x)), "coredns_anomaly_feature_missing", instance=inst)
    assert {dict(k[1])["feature"] for k in got} == want and set(got.values()) == {1.0}
    logged = [r.getMessage() for r in caplog.records if "no source metrics" in r.getMessage()]
    assert len(logged) == 1 and inst in logged[0] and "cache_hit_ratio" in logged[0]


def test_baselines_survive_a_restart(tmp_path, make_exporter, clock, bundle):
    state = tmp_path / "state" / "baselines.json"
    x = make_exporter(targets=["127.0.0.1:1"], state_file=str(state))
    inst, tl, spec = "10.1.0.5:9153", Timeline("normal"), bundle.baseline
    n = int((spec.warmup_seconds + 3 * spec.sample_every) / bundle.step_seconds)
    _steps(x, clock, tl, inst, 0, n)
    before = x.engine.states[inst].baseline
    assert before.warm()
    x.save_state()
    doc = json.loads(state.read_text())
    assert doc["version"] == 1 and inst in doc["baselines"]
    y = make_exporter(targets=["127.0.0.1:1"], state_file=str(state))
    _steps(y, clock, tl, inst, n, 1)
    after = y.engine.states[inst]
    assert not after.learning  # no second warm-up after a restart
    # The same rows, so the same normal: the spread reservoir and the location's recent rows.
    np.testing.assert_allclose(after.baseline.rows, before.rows, atol=1e-5, equal_nan=True)
    got, want = (np.stack([r for _, r in b.recent]) for b in (after.baseline, before))
    np.testing.assert_allclose(got, want, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(after.baseline.spread, before.spread, atol=1e-5)


def test_an_unreadable_state_file_means_learning_anew(tmp_path, make_exporter, clock, caplog):
    state = tmp_path / "baselines.json"
    state.write_text("{not json")
    caplog.set_level(logging.WARNING, "coredns_anomaly.exporter")
    x = make_exporter(targets=["127.0.0.1:1"], state_file=str(state))
    assert x.engine.saved_baselines == {}
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    x.s.state_file = str(tmp_path / "no-such-dir-is-made" / "x.json")
    x.save_state()  # the folder is created; nothing raised
    assert (tmp_path / "no-such-dir-is-made" / "x.json").is_file()
    assert len(FEATURE_NAMES) == x.engine.bundle.n_features
