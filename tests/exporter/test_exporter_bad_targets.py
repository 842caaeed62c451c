"""Sick targets over real HTTP: down, refusing, slow, 5xx, HTML, truncated, huge, dribbling.

Each is its own target (its own loopback port) in one fleet beside a healthy one serving real
CoreDNS pages, so every step proves both halves: the sick target is down with its error
counted by reason and has no score, and the healthy one is scored as usual in the same step.
"""

from __future__ import annotations

import gzip

import pytest
from exporter_testlib import Timeline, closed_port, load_pages, metrics_text, parse_metrics, value

from coredns_anomaly.exporter.engine import Observation
from coredns_anomaly.exporter.page import MAX_PAGE_BYTES

TIMEOUT = 0.4
HTML = "<!doctype html><html><head><title>Sign in</title></head><body><form></form></body></html>"
# name -> (how the page server misbehaves, the error reason the exporter must count)
SICK = {
    "down": ("nothing listens on the port", "connection"),
    "refuse": ("accepts the connection, then hangs up", "connection"),
    "slow": ("answers after 3x the timeout", "timeout"),
    "dribble": ("sends headers at once, then the body over 5x the timeout", "timeout"),
    "500": ("HTTP 500", "http_status"),
    "503": ("HTTP 503", "http_status"),
    "html": ("an HTML login page with status 200", "parse"),
    "empty": ("an empty 200", "parse"),
    "truncated": ("half the promised Content-Length, then hangs up", "connection"),
    "huge": ("a body over the page size limit", "too_large"),
    "malformed": ("a real page with one needed line broken", "parse"),
}


def setup_sick(srv, kind: str, real: str) -> None:
    route = {
        "refuse": dict(status=-1),
        "slow": dict(body=real, delay=3 * TIMEOUT),
        "dribble": dict(status=-3, body=real, delay=5 * TIMEOUT),
        "500": dict(status=500, body="internal error"),
        "503": dict(status=503, body="unavailable"),
        "html": dict(body=HTML, ctype="text/html"),
        "empty": dict(body=""),
        "truncated": dict(status=-2, body=real),
        "huge": dict(body=b"# " + b"x" * (MAX_PAGE_BYTES + 10) + b"\n"),
        "malformed": dict(body=real.replace("\nprocess_open_fds ", "\nprocess_open_fds {", 1)),
    }[kind]
    assert kind != "malformed" or route["body"] != real
    srv.set("/metrics", **route)


@pytest.fixture
def fleet(page_servers, clock, make_exporter):
    """A healthy target and one target per SICK kind, scraped by one Exporter."""
    real = load_pages("normal")[0]
    healthy = page_servers()
    tl = Timeline("normal")
    served = healthy.timeline("/metrics", tl)
    instances = {"healthy": healthy.instance(), "down": f"127.0.0.1:{closed_port()}"}
    for kind in SICK:
        if kind != "down":
            srv = page_servers()
            setup_sick(srv, kind, real)
            instances[kind] = srv.instance()
    x = make_exporter(targets=list(instances.values()), scrape_timeout=TIMEOUT)
    # The healthy target's first W-1 steps go straight into the engine (same pages, same
    # clock), so the test need not wait W steps of sick-target timeouts; the steps the test
    # runs then go over HTTP for every target and the healthy one is scored from the first.
    for _ in range(x.engine.bundle.window - 1):
        clock.now += x.engine.bundle.step_seconds
        x.engine.step([Observation(healthy.instance(), clock.now, text=tl.page(served[0]))])
        served[0] += 1
    return x, instances


def test_sick_targets_are_down_counted_and_unscored_beside_a_healthy_one(fleet, clock, bundle):
    x, inst = fleet
    steps = 3
    for k in range(steps):
        clock.now += bundle.step_seconds
        x.run_step()  # no exception from any sick target
        m = parse_metrics(metrics_text(x))
        # the healthy target is up and scored at every step
        assert value(m, "coredns_anomaly_target_up", instance=inst["healthy"]) == 1.0
        scored = value(m, "coredns_anomaly_score", instance=inst["healthy"])
        assert scored is not None and scored < 1.0, f"step {k}: score {scored}"
        fill = value(m, "coredns_anomaly_window_fill_ratio", instance=inst["healthy"])
        assert fill >= 1 - 1 / bundle.window  # (its first step has no rates: one masked row)
    assert x.steps == steps
    assert x.last_step_seconds < 2 * TIMEOUT + 0.7, "a sick target stalled the step"
    assert value(m, "coredns_anomaly_targets") == len(inst)
    assert value(m, "coredns_anomaly_score", instance=inst["healthy"]) < 1.0
    assert value(m, "coredns_anomaly", instance=inst["healthy"]) == 0.0
    for kind, (how, reason) in SICK.items():
        i = inst[kind]
        # Failed twice in a row, a sick target sits the third step out (backoff.py); a slow one
        # is instead not waited for (scrape.py) and counted each step.
        scraped = steps if reason == "timeout" else 2
        assert value(m, "coredns_anomaly_target_up", instance=i) == 0.0, how
        assert (
            value(m, "coredns_anomaly_target_errors_total", instance=i, reason=reason) == scraped
        ), f"{kind} ({how}): errors {x.engine.states[i].errors}"
        assert sum(x.engine.states[i].errors.values()) == scraped, f"{kind}: one per scrape"
        for name in ("coredns_anomaly", "coredns_anomaly_score", "coredns_anomaly_type"):
            assert value(m, name, instance=i) is None, f"{kind}: {name} must be absent"
        assert value(m, "coredns_anomaly_window_fill_ratio", instance=i) == 0.0


def test_a_slow_target_costs_the_step_at_most_its_timeout(page_servers, clock, make_exporter):
    real = load_pages("normal")[0]
    srvs = [page_servers() for _ in range(3)]
    setup_sick(srvs[0], "slow", real)
    setup_sick(srvs[1], "dribble", real)
    srvs[2].set("/metrics", body=real)
    x = make_exporter(targets=[s.instance() for s in srvs], scrape_timeout=TIMEOUT)
    x.run_step()
    assert x.last_step_seconds < TIMEOUT + 0.5, "the scrapes did not run concurrently or late"
    assert [x.engine.states[s.instance()].up for s in srvs] == [False, False, True]
    for s in srvs[:2]:
        assert x.engine.states[s.instance()].scrape_duration == pytest.approx(TIMEOUT, abs=0.25)


def test_a_gzip_encoded_page_is_decoded(page_server, make_exporter):
    # Go's promhttp (CoreDNS) gzips when asked; the scraper must decode it.
    real = load_pages("normal")[0]
    page_server.set(
        "/metrics", body=gzip.compress(real.encode()), headers={"Content-Encoding": "gzip"}
    )
    x = make_exporter(targets=[page_server.instance()])
    x.run_step()
    st = x.engine.states[page_server.instance()]
    assert st.up and not st.errors
    assert st.features.prev["req"] > 0


def test_a_target_that_recovers_is_scored_again_without_a_stale_score(page_server, clock, make_exporter, bundle):  # fmt: skip
    tl = Timeline("normal")
    step = page_server.timeline("/metrics", tl)
    x = make_exporter(targets=[page_server.instance()])
    i = page_server.instance()
    for _ in range(bundle.window):
        clock.now += bundle.step_seconds
        x.run_step()
    assert x.engine.states[i].verdict is not None
    page_server.set("/metrics", status=503)
    clock.now += bundle.step_seconds
    x.run_step()
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_score", instance=i) is None, "a down target has no stale score"
    assert value(m, "coredns_anomaly_target_up", instance=i) == 0.0
    page_server.timeline("/metrics", tl, step)
    clock.now += bundle.step_seconds
    x.run_step()
    # one missing step of W is allowed by the window rule: scored again at once, and calm
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_target_up", instance=i) == 1.0
    assert value(m, "coredns_anomaly_score", instance=i) < 1.0
    assert value(m, "coredns_anomaly_target_errors_total", instance=i, reason="http_status") == 1
