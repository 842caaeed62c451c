"""Hostile targets cannot stall, blind or poison the exporter (issue 13), over real loopback HTTP.

Each hostile target misbehaves byte by byte (exporter_testlib.HostileServer) beside a healthy
one serving real CoreDNS pages: headers or a body dribbled one byte at a time, a TLS handshake
that never ends, a chain of slow redirects, redirects to another host, a page with too many
samples. Every step must end within its scrape deadline with the healthy target scored and the
hostile ones down with a reason and no score; /metrics must answer while a step runs.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import requests
from exporter_testlib import (
    HostileServer,
    PageServer,
    Timeline,
    closed_port,
    huge_page,
    load_pages,
    metrics_text,
    parse_metrics,
    prefill,
    value,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from coredns_anomaly.exporter.scrape import HttpOptions, Scraper, count_samples
from coredns_anomaly.exporter.server import serve
from coredns_anomaly.exporter.targets import make_target

TIMEOUT = 0.5
SLACK = 0.4  # features + inference + thread wake-ups on a loaded 2-core machine


@pytest.fixture
def hostile():
    made: list[HostileServer] = []

    def make(behaviour: str, **kw) -> HostileServer:
        made.append(HostileServer(behaviour, **kw))
        return made[-1]

    yield make
    for h in made:
        h.close()


@pytest.fixture
def healthy(page_servers, clock, bundle):
    """A healthy target whose window is already full (prefilled), so it is scored at once."""
    srv = page_servers()
    tl = Timeline("normal")
    served = srv.timeline("/metrics", tl)
    return srv, {srv.instance(): (tl, served)}


def test_one_deadline_covers_connect_tls_headers_redirects_and_body(hostile, healthy, clock, make_exporter, bundle):  # fmt: skip
    real = load_pages("normal")[0].encode()
    bad = {
        "slow headers": hostile("slow_headers", interval=0.05),
        "dribbled body": hostile("dribble", page=lambda: real, interval=0.05),
        "slow TLS handshake": hostile("tls_slow_handshake", interval=0.05),
        "slow redirect chain": hostile("redirect_loop", hop_delay=0.15),
    }
    urls = [h.address(scheme="https" if k == "slow TLS handshake" else "http") for k, h in bad.items()]  # fmt: skip
    srv, feeds = healthy
    x = make_exporter(targets=[srv.instance(), *urls], scrape_timeout=TIMEOUT)
    prefill(x, clock, feeds, bundle.window - 1)
    steps = 3
    for k in range(steps):
        clock.now += bundle.step_seconds
        t0 = time.perf_counter()
        x.run_step()
        took = time.perf_counter() - t0
        # the first step waits for them up to the deadline; later steps no longer wait on
        # targets that were late (their scrapes run on in the background)
        limit = TIMEOUT + SLACK if k == 0 else SLACK
        assert took < limit, f"step {k} took {took:.2f}s: a target stalled it"
        m = parse_metrics(metrics_text(x))
        assert value(m, "coredns_anomaly_target_up", instance=srv.instance()) == 1.0
        assert value(m, "coredns_anomaly_score", instance=srv.instance()) is not None
    for kind, h in bad.items():
        i = h.instance()
        assert value(m, "coredns_anomaly_target_up", instance=i) == 0.0, kind
        assert value(m, "coredns_anomaly_score", instance=i) is None, kind
        errors = x.engine.states[i].errors
        # late once, then not waited for (nor backed off: backoff.py) while it proves itself
        assert errors == {"timeout": steps}, f"{kind}: {errors}"
    assert bad["slow redirect chain"].requests >= 2, "the chain was followed within the deadline"
    assert set(x.scraper.late) == {h.instance() for h in bad.values()}
    # The deadlines shut the late scrapes' sockets down: every worker is free again soon after.
    time.sleep(TIMEOUT + 0.2)
    assert all(f.done() for f, _ in x.scraper._running.values())


def test_redirects_stay_on_the_target_host(page_servers, hostile):
    real = load_pages("normal")[0]
    same = page_servers()
    same.set("/metrics", status=302, headers={"Location": "/real"})
    same.set("/real", body=real)
    other = hostile("page", page=lambda: real.encode())
    # "localhost" is another host than "127.0.0.1" for the same-host rule, as for a browser
    away = hostile("redirect_to", location=f"http://localhost:{other.port}/metrics")
    loop = hostile("redirect_loop")
    s = Scraper(2.0, HttpOptions(bearer_token="s3cret"), workers=4)
    try:
        got = {n: s.fetch(make_target(u)) for n, u in (("same", same.address("/metrics")), ("away", away.address()), ("loop", loop.address()))}  # fmt: skip
        assert got["same"].text == real, got["same"]
        assert (got["away"].reason, got["away"].text) == ("redirect", None)
        assert "another host" in got["away"].message and other.requests == 0
        assert got["loop"].reason == "redirect" and "more than 10" in got["loop"].message
        assert loop.requests == 11
    finally:
        s.close()
    # any-host follows, but the credentials stay with the target's own host
    s = Scraper(2.0, HttpOptions(bearer_token="s3cret"), workers=4, redirects="any-host")
    try:
        assert s.fetch(make_target(away.address())).text == real
        assert "authorization: bearer s3cret" in away.heads[-1].lower()
        assert "authorization" not in other.heads[-1].lower()
    finally:
        s.close()
    s = Scraper(2.0, workers=4, redirects="never")
    try:
        f = s.fetch(make_target(same.address("/metrics")))
        assert f.reason == "http_status" and "not followed" in f.message
    finally:
        s.close()


def test_a_page_over_the_sample_limit_is_refused_unparsed(page_servers, hostile, make_exporter, clock):  # fmt: skip
    real = load_pages("normal")[0]
    n_real = count_samples(real, 0)
    srv = page_servers()
    srv.set("/metrics", body=real)
    s = Scraper(2.0, workers=2, sample_limit=n_real - 1)
    try:
        f = s.fetch(make_target(srv.instance()))
        assert f.reason == "sample_limit" and f"{n_real} samples" in f.message
    finally:
        s.close()
    s = Scraper(2.0, workers=2, sample_limit=n_real)
    try:
        assert s.fetch(make_target(srv.instance())).text == real
    finally:
        s.close()
    # A 450k-series page just under the size cap costs the step a cut-short download, not
    # seconds of parsing (it made every step 3-5 s before).
    body = huge_page()
    assert len(body) < 20 * 1024 * 1024
    huge = hostile("page", page=lambda: body)
    ok = page_servers()
    ok.set("/metrics", body=real)
    x = make_exporter(targets=[huge.instance(), ok.instance()], scrape_timeout=2.0)
    for _ in range(2):
        t0 = time.perf_counter()
        x.run_step()
        assert time.perf_counter() - t0 < 0.6
    assert x.engine.states[huge.instance()].errors == {"sample_limit": 2}
    assert x.engine.states[ok.instance()].up


def test_metrics_serve_the_last_step_without_waiting_on_a_running_one(page_server, make_exporter):  # fmt: skip
    page_server.set("/metrics", body=load_pages("normal")[0])
    x = make_exporter(targets=[page_server.instance()])
    x.run_step()
    httpd, _ = serve(x, "127.0.0.1:0")
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        # A step holds the lock while it parses and scores (as a slow page made it do for
        # seconds); here one holds it for 2 s while /metrics and / are read.
        held, release = threading.Event(), threading.Event()

        def step_in_progress():
            with x.lock:
                held.set()
                release.wait(2.0)

        t = threading.Thread(target=step_in_progress)
        t.start()
        held.wait(1.0)
        for path in ("/metrics", "/"):
            t0 = time.perf_counter()
            r = requests.get(url + path, timeout=5)
            assert r.status_code == 200 and time.perf_counter() - t0 < 0.5, path
        m = parse_metrics(r.text if path == "/metrics" else requests.get(url + "/metrics", timeout=5).text)  # fmt: skip
        assert value(m, "coredns_anomaly_target_up", instance=page_server.instance()) == 1.0
        assert value(m, "coredns_anomaly_steps_total") == 1.0
        release.set()
        t.join()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_scores_are_withheld_when_steps_stop_completing(healthy, clock, make_exporter, bundle):
    srv, feeds = healthy
    x = make_exporter(targets=[srv.instance()])
    prefill(x, clock, feeds, bundle.window - 1)
    clock.now += bundle.step_seconds
    x.run_step()
    inst = srv.instance()
    assert value(parse_metrics(metrics_text(x)), "coredns_anomaly_score", instance=inst) is not None
    x.last_step_end -= 4 * bundle.step_seconds + x.last_step_seconds  # no step for 4 steps
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_score", instance=inst) is None, "a stale score shown as live"
    assert value(m, "coredns_anomaly", instance=inst) is None
    assert value(m, "coredns_anomaly_target_up", instance=inst) == 1.0  # what the last step saw


def test_parse_and_scrape_errors_are_counted_per_scrape_and_logged_once_a_minute(page_servers, make_exporter, caplog):  # fmt: skip
    real = load_pages("normal")[0]
    broken = page_servers()
    broken.set("/metrics", body=real.replace("\nprocess_open_fds ", "\nprocess_open_fds {", 1))
    down = f"127.0.0.1:{closed_port()}"
    x = make_exporter(targets=[broken.instance(), down])
    caplog.set_level(logging.WARNING, logger="coredns_anomaly.exporter")
    for _ in range(3):
        x.run_step()
    scraped = 2  # after two failures in a row a target sits the third step out (backoff.py)
    assert x.engine.states[broken.instance()].errors == {"parse": scraped}
    assert x.engine.states[down].errors == {"connection": scraped}
    assert not x.engine.states[down].up and x.backoff.failing == 2
    m = parse_metrics(metrics_text(x))
    assert value(m, "coredns_anomaly_target_errors_total", instance=broken.instance(), reason="parse") == scraped  # fmt: skip
    logged = [r.getMessage() for r in caplog.records]
    parse_lines = [ln for ln in logged if broken.instance() in ln]
    assert len(parse_lines) == 1, logged
    assert "does not parse" in parse_lines[0] and "line" in parse_lines[0]
    assert len([ln for ln in logged if down in ln]) == 1, logged


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["", "# HELP x y", "# TYPE x counter", "x 1", '  x{a="b"} 2', "  # c"]),
        max_size=60,
    ),
    st.integers(0, 40),
)
def test_count_samples_counts_lines_that_are_not_blank_or_comments(lines, limit):
    text = "\n".join(lines)
    naive = sum(1 for ln in lines if ln.strip() and not ln.strip().startswith("#"))
    t0 = time.perf_counter()
    got = count_samples(text, limit)
    assert time.perf_counter() - t0 < 0.01
    # exact when it matters (over the limit); otherwise an upper bound that is within it
    assert got == naive if got > limit else naive <= got <= limit


def test_the_step_is_abandoned_at_once_on_stop(hostile, make_exporter):
    slow = hostile("slow_headers", interval=0.05)
    x = make_exporter(targets=[slow.instance()], scrape_timeout=5.0)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.perf_counter()
    x.run_step(stop)
    assert time.perf_counter() - t0 < 0.8, "SIGTERM waited on a stalled scrape"
    assert x.steps == 0 and not x.engine.states, "an abandoned step records nothing"


def test_a_healthy_page_server_is_unaffected(page_server: PageServer, make_exporter):
    # guard: the deadline machinery leaves an ordinary scrape alone, twice on one connection
    page_server.set("/metrics", body=load_pages("normal")[0])
    x = make_exporter(targets=[page_server.instance()])
    x.run_step()
    x.run_step()
    assert x.engine.states[page_server.instance()].up
    assert not x.engine.states[page_server.instance()].errors


def test_a_late_target_is_not_waited_for_until_it_answers_in_time_again(page_server, make_exporter):  # fmt: skip
    from coredns_anomaly.exporter.scrape import RELEASE_STEPS

    real = load_pages("normal")[0]
    page_server.set("/metrics", body=real, delay=2 * TIMEOUT)
    i = page_server.instance()
    x = make_exporter(targets=[i], scrape_timeout=TIMEOUT)
    x.run_step()
    assert x.engine.states[i].errors == {"timeout": 1} and i in x.scraper.late
    page_server.set("/metrics", body=real)  # recovered
    ups = []
    for _ in range(RELEASE_STEPS + 4):  # room for the steps it sits out (backoff.py)
        time.sleep(0.1)  # steps are a model step apart; the background scrape lands meanwhile
        t0 = time.perf_counter()
        x.run_step()
        ups.append(x.engine.states[i].up)
        assert time.perf_counter() - t0 < SLACK
    # down while it proves itself (its answers land after the step), then waited for and up
    assert ups[0] is False and ups[-1] is True, ups
    assert ups == sorted(ups), f"up again, it stays up: {ups}"
    assert i not in x.scraper.late
