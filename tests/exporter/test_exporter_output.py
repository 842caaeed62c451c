"""The exporter's HTTP output: /metrics passes Debian's promtool while targets are anomalous,
calm and down; the landing page and health endpoints answer; series follow the fleet (a target
that leaves takes its series with it); a broken targets file keeps the last good list."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import requests
from exporter_testlib import (
    Timeline,
    bump_mtime,
    closed_port,
    parse_metrics,
    prefill,
    series,
    value,
)
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse

from coredns_anomaly.contracts import names as N
from coredns_anomaly.exporter.server import make_app, serve

SERIES = [v for k, v in vars(N).items() if k.isupper() and str(v).startswith("coredns_anomaly")]


@pytest.fixture
def http(make_exporter):
    """serve() an exporter on a free loopback port (the real server the CLI uses)."""
    started = []

    def start(x):
        httpd, _ = serve(x, "127.0.0.1:0")
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield start
    for h in started:
        h.shutdown()
        h.server_close()


@pytest.fixture
def mixed(page_servers, clock, make_exporter, bundle, http):
    """Three targets after a full window: anomalous (upstream latency), calm, down."""
    sick, calm = page_servers(), page_servers()
    feeds = {}
    for srv, scenario in ((sick, "upstream_latency"), (calm, "normal")):
        tl = Timeline(scenario)
        feeds[srv.instance()] = (tl, srv.timeline("/metrics", tl))
    down = f"127.0.0.1:{closed_port()}"
    x = make_exporter(targets=[sick.instance(), calm.instance(), down], scrape_timeout=0.5)
    # enough scored steps for the debounce, then two steps over HTTP for all three
    prefill(x, clock, feeds, bundle.window - 1 + bundle.debounce_steps)
    for _ in range(2):
        clock.now += bundle.step_seconds
        x.run_step()
    return x, http(x), {"sick": sick.instance(), "calm": calm.instance(), "down": down}


def promtool(text: str) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: apt-get install -y prometheus (or `make setup`)")
    return subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)  # fmt: skip


def test_metrics_pass_promtool_with_anomalous_calm_and_down_targets(mixed):
    x, url, inst = mixed
    r = requests.get(f"{url}/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    res = promtool(r.text)
    assert res.returncode == 0, res.stdout + res.stderr
    m = parse_metrics(r.text)
    # anomalous: flagged, with a type and the top features
    assert value(m, "coredns_anomaly", instance=inst["sick"]) == 1.0
    assert value(m, "coredns_anomaly_score", instance=inst["sick"]) >= 1.0
    (typ,) = series(m, "coredns_anomaly_type", instance=inst["sick"])
    assert dict(typ[1])["type"] in x.engine.bundle.type_names
    contrib = series(m, "coredns_anomaly_feature_contribution", instance=inst["sick"])
    assert len(contrib) == 3
    # calm: scored 0, no type, no explanation
    assert value(m, "coredns_anomaly", instance=inst["calm"]) == 0.0
    assert value(m, "coredns_anomaly_score", instance=inst["calm"]) < 1.0
    assert not series(m, "coredns_anomaly_type", instance=inst["calm"])
    assert not series(m, "coredns_anomaly_feature_contribution", instance=inst["calm"])
    # down: up 0, errors, nothing stale
    assert value(m, "coredns_anomaly_target_up", instance=inst["down"]) == 0.0
    assert value(m, "coredns_anomaly_target_errors_total", instance=inst["down"], reason="connection") > 0  # fmt: skip
    for name in ("coredns_anomaly", "coredns_anomaly_score", "coredns_anomaly_type", "coredns_anomaly_feature_contribution"):  # fmt: skip
        assert not series(m, name, instance=inst["down"])
    # the exporter's own health
    assert value(m, "coredns_anomaly_targets") == 3
    assert value(m, "coredns_anomaly_steps_total") == x.steps
    assert value(m, "coredns_anomaly_model_step_seconds") == pytest.approx(
        x.engine.bundle.step_seconds
    )
    (info,) = series(m, "coredns_anomaly_model_info")
    labels = dict(info[1])
    assert labels["sha256"] == x.engine.bundle.sha256 and labels["window"] == str(
        x.engine.bundle.window
    )
    assert labels["runtime"].split()[0] in ("ai-edge-litert", "tflite-runtime")
    # every series is one contracts/names.py spells out (feature_missing: only when one is)
    published = {name for name, _ in m if name.startswith("coredns_anomaly")}
    assert published <= set(SERIES) and set(SERIES) - published <= {N.FEATURE_MISSING}


def test_openmetrics_and_gzip_are_negotiated(mixed):
    _, url, inst = mixed
    r = requests.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}, timeout=5)  # fmt: skip
    assert r.headers["Content-Type"].startswith("application/openmetrics-text")
    fams = {f.name: f for f in om_parse(r.text)}
    assert fams["coredns_anomaly_target_errors"].type == "counter"
    assert fams["coredns_anomaly_steps"].samples[0].value > 0
    g = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert g.headers.get("Content-Encoding") == "gzip" and "coredns_anomaly_score" in g.text


def test_metrics_pass_promtool_before_any_step(make_exporter, http):
    x = make_exporter(targets=[f"127.0.0.1:{closed_port()}"])
    text = requests.get(f"{http(x)}/metrics", timeout=5).text
    res = promtool(text)
    assert res.returncode == 0, res.stdout + res.stderr
    assert value(parse_metrics(text), "coredns_anomaly_targets") == 0


def test_landing_page_health_and_ready(mixed):
    x, url, inst = mixed
    r = requests.get(f"{url}/", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert x.engine.bundle.sha256[:16] in r.text and "/metrics" in r.text
    for name in inst.values():
        assert name in r.text
    assert "down" in r.text and "up" in r.text
    h = requests.get(f"{url}/-/healthy", timeout=5)
    assert h.status_code == 200 and h.text == "OK\n"
    rd = requests.get(f"{url}/-/ready", timeout=5)
    assert rd.status_code == 200 and rd.text == "ready\n"
    nf = requests.get(f"{url}/nope", timeout=5)
    assert nf.status_code == 404


def test_ready_is_503_without_a_model(mixed):
    # the WSGI app on its own, called directly: an exporter whose engine is not (yet) loaded
    x, _, _ = mixed
    app = make_app(x)
    x.engine, engine = None, x.engine
    try:
        out = {}
        body = b"".join(app({"PATH_INFO": "/-/ready"}, lambda s, h: out.setdefault("status", s)))
        assert out["status"].startswith("503") and b"not loaded" in body
    finally:
        x.engine = engine


def write_sd(path, instances: list[str]) -> None:
    path.write_text(json.dumps([{"targets": instances, "labels": {"env": "test"}}]))
    bump_mtime(path)


def test_a_target_that_leaves_the_file_takes_its_series(tmp_path, page_servers, clock, make_exporter, bundle):  # fmt: skip
    a, b = page_servers(), page_servers()
    for s in (a, b):
        s.timeline("/metrics", Timeline("normal"))
    sd = tmp_path / "targets.json"
    write_sd(sd, [a.instance(), b.instance()])
    x = make_exporter(targets_file=str(sd))
    from exporter_testlib import metrics_text

    for _ in range(bundle.window):
        clock.now += bundle.step_seconds
        x.run_step()
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_score", instance=b.instance()) is not None
    write_sd(sd, [a.instance()])
    clock.now += bundle.step_seconds
    x.run_step()
    m = parse_metrics(metrics_text(x))
    assert not [k for k in m if ("instance", b.instance()) in k[1]], "stale series of a gone target"
    assert value(m, "coredns_anomaly_score", instance=a.instance()) is not None
    assert value(m, "coredns_anomaly_targets") == 1
    # and when it comes back it starts a fresh window (no stale score from before)
    write_sd(sd, [a.instance(), b.instance()])
    clock.now += bundle.step_seconds
    x.run_step()
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_target_up", instance=b.instance()) == 1.0
    assert value(m, "coredns_anomaly_score", instance=b.instance()) is None
    assert value(m, "coredns_anomaly_window_fill_ratio", instance=b.instance()) == 0.0


@pytest.mark.parametrize("bad", ["[{targets: [unclosed", '{"not": "a list"}', "- targets: 5\n", "- targets: ['ftp://host:21', ':9153']\n", None])  # fmt: skip
def test_a_broken_targets_file_keeps_the_last_good_list(tmp_path, page_servers, clock, make_exporter, bundle, bad):  # fmt: skip
    a, b = page_servers(), page_servers()
    for s in (a, b):
        s.timeline("/metrics", Timeline("normal"))
    sd = tmp_path / "targets.yml"
    sd.write_text(f"- targets: ['{a.instance()}', '{b.instance()}']\n")
    bump_mtime(sd)
    x = make_exporter(targets_file=str(sd))
    clock.now += bundle.step_seconds
    x.run_step()
    if bad is None:
        sd.unlink()
    else:
        sd.write_text(bad)
        bump_mtime(sd)
    for _ in range(2):
        clock.now += bundle.step_seconds
        x.run_step()
    assert x.source.file_errors >= 1
    assert sorted(x.engine.states) == sorted([a.instance(), b.instance()])
    assert all(st.up for st in x.engine.states.values())
