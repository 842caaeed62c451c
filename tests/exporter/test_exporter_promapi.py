"""The Prometheus source: the selector query, pages grouped by instance from canned API
answers (a loopback fake API, to pin exact answers and errors), and, as an integration test,
the real Debian Prometheus scraping a real CoreDNS."""

from __future__ import annotations

import contextlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
from urllib.parse import parse_qs

import pytest

from coredns_anomaly.exporter.features import FEATURE_NAMES, NEEDED_NAMES
from coredns_anomaly.exporter.promapi import PrometheusSource, PrometheusSourceError, selector_query
from coredns_anomaly.exporter.service import StepMismatch

# -- selector_query ----------------------------------------------------------------------


def names_in(query: str) -> set[str]:
    m = re.search(r'__name__=~"([^"]*)"', query)
    assert m, query
    return {n.replace("\\", "") for n in m.group(1).split("|")}


def test_selector_query_adds_every_needed_family_to_the_matchers():
    q = selector_query('{job="coredns", namespace=~"kube-.*"}')
    assert q.startswith("{__name__=~") and q.endswith(', job="coredns", namespace=~"kube-.*"}')
    assert names_in(q) == set(NEEDED_NAMES)
    assert names_in(selector_query("")) == set(NEEDED_NAMES)
    assert selector_query(" {} ") == selector_query("")
    assert selector_query('{job="coredns"}') == selector_query(' { job="coredns" } ')


@pytest.mark.parametrize("bad", ['job="coredns"', "coredns", '{job="coredns"'])
def test_selector_query_refuses_a_selector_without_braces(bad):
    with pytest.raises(PrometheusSourceError, match="--prometheus-selector"):
        selector_query(bad)


# -- canned answers ----------------------------------------------------------------------
def vector(*series) -> dict:
    return {"status": "success", "data": {"resultType": "vector", "result": list(series)}}


def s(name: str, value: str, **labels) -> dict:
    return {"metric": {"__name__": name, **labels}, "value": [1700000000.0, value]}


CANNED = vector(
    s(
        "coredns_dns_requests_total",
        "120",
        instance="10.0.0.1:9153",
        job="coredns",
        type="A",
        proto="udp",
    ),  # fmt: skip
    s(
        "coredns_dns_requests_total",
        "30",
        instance="10.0.0.1:9153",
        job="coredns",
        type="AAAA",
        proto="udp",
    ),  # fmt: skip
    s("process_start_time_seconds", "1.7e9", instance="10.0.0.1:9153", job="coredns"),
    s("go_goroutines", "NaN", instance="10.0.0.1:9153", job="coredns"),
    s("coredns_dns_requests_total", "7", instance="10.0.0.2:9153", job="coredns", type="A"),
    s("process_open_fds", "+Inf", instance="10.0.0.2:9153", job="coredns"),
    s("coredns_dns_requests_total", "99", job="coredns", type="A"),  # no instance: skipped
)


def test_fetch_groups_series_into_one_page_per_instance(page_server):
    page_server.set("/api/v1/query", body=json.dumps(CANNED), ctype="application/json")
    src = PrometheusSource(page_server.address(""), '{job="coredns"}', 2.0)
    obs = src.fetch()
    assert [o.instance for o in obs] == ["10.0.0.1:9153", "10.0.0.2:9153"]
    a, b = obs[0].page, obs[1].page
    assert sorted(v for _, v in a.get("coredns_dns_requests_total")) == [30.0, 120.0]
    labels = a.get("coredns_dns_requests_total")[0][0]
    assert "__name__" not in labels and labels["instance"] == "10.0.0.1:9153"
    assert a.get("process_start_time_seconds") == [({"instance": "10.0.0.1:9153", "job": "coredns"}, 1.7e9)]  # fmt: skip
    assert not a.has("go_goroutines") and a.dropped_nonfinite == 1, "NaN is dropped"
    assert not b.has("process_open_fds") and b.dropped_nonfinite == 1, "+Inf is dropped"
    assert all(o.reason == "" and o.text is None for o in obs)
    path, form = page_server.posted[-1]
    assert path == "/api/v1/query"
    sent = parse_qs(form)
    assert sent["query"] == [selector_query('{job="coredns"}')]
    assert abs(float(sent["time"][0]) - time.time()) < 60


def test_another_instance_label_can_name_the_instance(page_server):
    page_server.set("/api/v1/query", body=json.dumps(vector(s("go_goroutines", "5", pod="coredns-abc"))), ctype="application/json")  # fmt: skip
    obs = PrometheusSource(page_server.address(""), "", 2.0, instance_label="pod").fetch()
    assert [(o.instance, o.page.get("go_goroutines")[0][1]) for o in obs] == [("coredns-abc", 5.0)]


def test_history_cuts_a_range_answer_into_steps(page_server):
    step, steps = 2.0, 4
    now = time.time()
    start = now - (steps - 1) * step
    values = [[start + k * step, str(100 + 10 * k)] for k in range(steps) if k != 1]  # k=1 missing
    body = {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "coredns_dns_requests_total", "instance": "i:9153"}, "values": values},
    ]}}  # fmt: skip
    page_server.set("/api/v1/query_range", body=json.dumps(body), ctype="application/json")
    hist = PrometheusSource(page_server.address(""), "", 2.0).history(steps, step)
    assert len(hist) == steps
    got = [[o.page.get("coredns_dns_requests_total")[0][1] for o in obs] for obs in hist]
    assert got == [[100.0], [], [120.0], [130.0]]
    form = parse_qs(page_server.posted[-1][1])
    assert form["step"] == ["2"] and float(form["end"][0]) - float(form["start"][0]) == pytest.approx(6.0, abs=0.01)  # fmt: skip


@pytest.mark.parametrize(
    "status, body, words",
    [
        (
            400,
            json.dumps(
                {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
            ),
            ["HTTP 400", "parse error"],
        ),  # fmt: skip
        (200, "<html>Grafana login</html>", ["not JSON", "wrong URL"]),
        (503, "Service Unavailable", ["HTTP 503"]),
    ],
)
def test_api_errors_become_prometheus_source_errors(page_server, status, body, words):
    page_server.set("/api/v1/query", status=status, body=body)
    with pytest.raises(PrometheusSourceError) as info:
        PrometheusSource(page_server.address(""), "", 2.0).fetch()
    for w in words:
        assert w in str(info.value)


def test_an_unreachable_api_is_a_prometheus_source_error():
    from exporter_testlib import closed_port

    with pytest.raises(PrometheusSourceError, match="Prometheus API"):
        PrometheusSource(f"http://127.0.0.1:{closed_port()}", "", 0.5).fetch()


def test_when_the_api_fails_known_instances_are_down_not_stale(page_server, make_exporter):
    page_server.set("/api/v1/query", body=json.dumps(CANNED), ctype="application/json")
    x = make_exporter(prometheus_url=page_server.address(""))
    x.run_step()
    assert sorted(x.engine.states) == ["10.0.0.1:9153", "10.0.0.2:9153"]
    assert all(st.up for st in x.engine.states.values())
    page_server.set("/api/v1/query", status=502, body="bad gateway")
    x.run_step()
    assert sorted(x.engine.states) == ["10.0.0.1:9153", "10.0.0.2:9153"]
    for st in x.engine.states.values():
        assert not st.up and st.errors == {"prometheus_api": 1} and st.verdict is None


def test_an_instance_gone_from_prometheus_is_down_then_dropped(page_server, make_exporter):
    from coredns_anomaly.exporter import service

    page_server.set("/api/v1/query", body=json.dumps(CANNED), ctype="application/json")
    x = make_exporter(prometheus_url=page_server.address(""))
    x.run_step()
    only_one = vector(
        *[r for r in CANNED["data"]["result"] if r["metric"].get("instance") == "10.0.0.1:9153"]
    )
    page_server.set("/api/v1/query", body=json.dumps(only_one), ctype="application/json")
    x.run_step()
    gone = x.engine.states["10.0.0.2:9153"]  # still there, shown down, no score
    assert not gone.up and gone.errors == {"absent": 1} and gone.verdict is None
    x._absent_since["10.0.0.2:9153"] -= (service.ABSENT_STEPS + 1) * x.step_seconds
    x.run_step()  # absent for longer than Prometheus' staleness: it left the fleet
    assert sorted(x.engine.states) == ["10.0.0.1:9153"]


def test_prometheus_source_respects_the_shard(page_server, make_exporter):
    from coredns_anomaly.exporter.shard import owns

    page_server.set("/api/v1/query", body=json.dumps(CANNED), ctype="application/json")
    for i in range(2):
        x = make_exporter(prometheus_url=page_server.address(""), shard=(i, 2))
        x.run_step()
        want = [n for n in ("10.0.0.1:9153", "10.0.0.2:9153") if owns(n, (i, 2))]
        assert sorted(x.engine.states) == want


# -- the real thing ----------------------------------------------------------------------
def dns_query(port: int, name: str) -> None:
    """One A query over UDP (whoami answers any name)."""
    qid = random.randrange(65536)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    q += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(q, ("127.0.0.1", port))
        sock.recv(512)


@pytest.fixture
def real_coredns(tmp_path):
    """The pinned real CoreDNS (.tools/bin/coredns) with whoami and prometheus on loopback."""
    from coredns_anomaly.lab import processes

    binary = processes.find_binary("coredns")
    dns, mport = processes.free_port(), processes.free_port()
    (tmp_path / "Corefile").write_text(
        f".:{dns} {{\n  bind 127.0.0.1\n  prometheus 127.0.0.1:{mport}\n  whoami\n}}\n"
    )
    proc = processes.spawn([binary, "-conf", str(tmp_path / "Corefile")], log_path=tmp_path / "coredns.log", cwd=tmp_path)  # fmt: skip
    try:
        processes.wait_http(f"http://127.0.0.1:{mport}/metrics", 20, proc)
        stop = threading.Event()

        def traffic() -> None:  # ~50 queries/s, so the request counters move
            k = 0
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    dns_query(dns, f"q{k}.example.org")
                k += 1
                stop.wait(0.02)

        t = threading.Thread(target=traffic, daemon=True)
        t.start()
        yield f"127.0.0.1:{mport}"
        stop.set()
        t.join(5)
    finally:
        processes.stop(proc)


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_prometheus_source_with_real_prometheus_and_real_coredns(tmp_path, real_coredns, make_exporter):  # fmt: skip
    from exporter_testlib import copy_model

    from coredns_anomaly.lab import prometheus

    # The shipped model's window (W steps of ~2 s) could need a minute of Prometheus history
    # before warm_up; a copy with a 0.25 s step (metadata only: same weights, same W), scraped
    # every 0.1 s, needs W/4 s. The plumbing under test (query, grouping, history cut into
    # steps, warm start) does not depend on the step's length.
    model = copy_model(tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    meta["step_seconds"] = 0.25
    (model / "model.json").write_text(json.dumps(meta))
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    config = prometheus.scrape_config([real_coredns], interval="100ms")
    with prometheus.start(prom_dir, config, ready_timeout=30) as prom:
        url = prom.url
        x = make_exporter(
            model=str(model), prometheus_url=url, prometheus_selector='{job="coredns"}',
            scrape_timeout=5.0,
        )  # fmt: skip
        bundle = x.engine.bundle
        assert bundle.step_seconds == 0.25
        # Prometheus must hold a window of history (W steps of the model's step) for warm_up
        need = (bundle.window - 1) * bundle.step_seconds + 3
        deadline = time.monotonic() + need + 40
        while time.monotonic() < deadline:
            hist = x.prom.history(bundle.window, bundle.step_seconds)
            if all(any(o.instance == real_coredns for o in obs) for obs in hist):
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"Prometheus never held {bundle.window} steps of {real_coredns}")
        # a live instant query: one page for the real CoreDNS, with the families CoreDNS serves
        obs = x.observe()
        (ob,) = [o for o in obs if o.instance == real_coredns]
        assert ob.page is not None and ob.reason == ""
        for name in ("coredns_dns_requests_total", "coredns_dns_responses_total", "process_cpu_seconds_total", "process_start_time_seconds", "coredns_plugin_enabled"):  # fmt: skip
            assert ob.page.has(name), name
        assert sum(v for _, v in ob.page.get("coredns_dns_requests_total")) > 0
        # warm start: the window fills from history, so the very first live step is scored
        x.warm_up()
        st = x.engine.states[real_coredns]
        assert st.filled == bundle.window and st.ready(), st.missing
        assert st.verdict is not None and math.isfinite(st.verdict.score)
        rate = math.expm1(st.rows[-1][FEATURE_NAMES.index("dns_requests_rate")])  # ln(1+req/s)
        assert 5 < rate < 500, rate
        x.run_step()
        assert x.engine.states[real_coredns].verdict is not None
        assert x.engine.states[real_coredns].up
        # The step check reads the real scrape interval (0.1 s): a 0.25 s model is fine; a
        # 0.02 s model is refused, naming the bundle beside it whose step fits.
        x.check_step()
        fast = copy_model(tmp_path / "fast")
        meta["step_seconds"] = 0.02
        (fast / "model.json").write_text(json.dumps(meta))
        y = make_exporter(
            model=str(fast), prometheus_url=url, prometheus_selector='{job="coredns"}',
        )  # fmt: skip
        with pytest.raises(StepMismatch, match=r"every 0\.1 s .* use .*model \(its step fits\)"):
            y.check_step()
