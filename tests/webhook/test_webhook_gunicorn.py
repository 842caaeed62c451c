"""The receiver under real gunicorn: multiprocess metrics, worker crashes, HTTP-level limits."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from webhook_fuzzlib import FUZZ_SETTINGS, bad_bodies
from webhook_testlib import alert, payload

from coredns_anomaly.lab.processes import free_port
from coredns_anomaly.lab.webhook_faults import crash_check
from coredns_anomaly.lab.webhook_server import TOKEN as SERVER_TOKEN

pytestmark = pytest.mark.integration


def post(url: str, body: bytes, token: str = SERVER_TOKEN, headers: dict | None = None) -> int:
    req = urllib.request.Request(
        f"{url}/webhook",
        data=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def scrape(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(coredns_anomaly_webhook_[^ ]+) ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_multiprocess_metrics_and_worker_crash(server_factory, tmp_path):
    stale = tmp_path / "server" / "metrics"
    stale.mkdir(parents=True, mode=0o700)  # private, or the server refuses it
    (stale / "counter_99999.db").write_bytes(b"stale")
    server = server_factory(workers=2, threads=2)
    assert not (stale / "counter_99999.db").exists(), "multiprocess dir not wiped at start"

    bodies = [json.dumps(payload(alert(f"m{i}"), group_key=f"g{i}")).encode() for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda b: post(server.url, b), bodies[:40])) == {200}
    assert post(server.url, bodies[0]) == 200  # a retry: duplicate
    assert post(server.url, b"{}") == 400
    assert post(server.url, bodies[1], token="wrong") == 401

    m = scrape(server.url)
    assert m["coredns_anomaly_webhook_deliveries_stored_total"] == 41
    assert m['coredns_anomaly_webhook_alerts_stored_total{status="firing"}'] == 40
    assert m["coredns_anomaly_webhook_alerts_duplicate_total"] == 1
    assert m['coredns_anomaly_webhook_deliveries_rejected_total{reason="invalid_schema"}'] == 1
    assert m['coredns_anomaly_webhook_deliveries_rejected_total{reason="unauthorized"}'] == 1
    assert m["coredns_anomaly_webhook_delivery_duration_seconds_count"] == 43

    # kill -9 a worker: gunicorn replaces it, counts of the dead worker survive in its files.
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (victim in server.workers() or len(server.workers()) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert victim not in server.workers() and len(server.workers()) == 2
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda b: post(server.url, b), bodies[40:])) == {200}
    m = scrape(server.url)
    assert m["coredns_anomaly_webhook_deliveries_stored_total"] == 61
    assert "Traceback" not in Path(server.log_path).read_text()


def test_http_limits_under_gunicorn(server_factory):
    server = server_factory(workers=1, threads=2, extra_args=["--max-body-bytes", "65536"])
    big = json.dumps(payload(alert(annotations={"description": "x" * 100_000}))).encode()
    assert post(server.url, big) == 413

    # Chunked, no Content-Length: refused once past the cap.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + SERVER_TOKEN.encode()
            + b"\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        )
        chunk = b"[" * 32768
        try:
            for _ in range(4):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may answer and close before reading everything
        assert s.recv(4096).startswith(b"HTTP/1.1 413")

    # A normal delivery right after still works.
    assert post(server.url, json.dumps(payload(alert())).encode()) == 200


def test_fuzz_over_http_never_5xx_never_a_dead_worker(server_factory):
    server = server_factory(workers=2, threads=2)
    workers = sorted(server.workers())
    seen = {"n": 0}

    @settings(FUZZ_SETTINGS, max_examples=400)
    @given(bad_bodies())
    def check(body):
        seen["n"] += 1
        assert post(server.url, body) in (400, 413)

    check()
    assert seen["n"] >= 400
    assert sorted(server.workers()) == workers, "a worker died or was restarted"
    conn = sqlite3.connect(server.db)
    try:
        assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    finally:
        conn.close()


def test_crash_consistency_short(tmp_path):
    """kill -9 a worker and then the master under load; every 2xx is stored exactly once."""
    report = crash_check(
        tmp_path / "crash",
        duration=5,
        rate=150,
        kill_worker_at=1.5,
        kill_master_at=3.0,
        resend_sample=100,
        log=lambda m: None,
    )
    assert report["integrity_check"] == "ok"
    assert report["missing_acknowledged"] == 0, report
    assert report["stored_more_than_once"] == 0, report
    assert report["unexpected_in_store"] == 0, report
    assert report["acknowledged_2xx"] > 300, report
    assert report["pass"], report


def test_gunicorn_run_directly_refuses_without_credentials(tmp_path):
    import subprocess

    from coredns_anomaly.webhook.cli import gunicorn_argv

    env = {k: v for k, v in os.environ.items() if not k.startswith("COREDNS_ANOMALY_WEBHOOK_")}
    env.update(
        COREDNS_ANOMALY_WEBHOOK_LISTEN=f"127.0.0.1:{free_port()}",
        COREDNS_ANOMALY_WEBHOOK_DB=str(tmp_path / "w.db"),
        COREDNS_ANOMALY_WEBHOOK_METRICS_DIR=str(tmp_path / "m"),
    )
    r = subprocess.run(
        gunicorn_argv(),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "no credentials configured; refusing to start" in r.stderr
