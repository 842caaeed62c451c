"""The exporter's own listener (issue 13): TLS and basic auth from a Prometheus-style web config
file, a bounded pool of workers that idle or stalled clients cannot exhaust, and the real CLI
process over HTTPS, stopped by SIGTERM in the middle of a stalled scrape.

Everything is real: certificates made by the openssl CLI, TLS on loopback, bcrypt hashes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import bcrypt
import pytest
import requests
import yaml
from exporter_testlib import (
    MODEL_DIR,
    PYTHON,
    ROOT,
    HostileServer,
    load_pages,
    openssl_cert,
    parse_metrics,
    value,
)

from coredns_anomaly.exporter import webconfig
from coredns_anomaly.exporter.server import WORKERS, serve
from coredns_anomaly.exporter.webconfig import WebConfigError, WebConfigFile, load_web_config

PASSWORD = "correct horse"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()  # cost 4: fast tests


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by it."""
    d = tmp_path_factory.mktemp("pki")
    ca = openssl_cert(d, "ca", cn="test CA")
    return {"ca": ca, "server": openssl_cert(d, "server", ca), "client": openssl_cert(d, "client", ca, cn="prometheus")}  # fmt: skip


def write_web_config(path, pki, **extra) -> str:
    doc = {
        "tls_server_config": {
            "cert_file": str(pki["server"][0]),
            "key_file": str(pki["server"][1]),
        },  # fmt: skip
        "basic_auth_users": {"prometheus": HASH},
        "http_server_config": {"headers": {"Strict-Transport-Security": "max-age=31536000"}},
    }
    for k, v in extra.items():
        doc.setdefault(k, {}).update(v) if isinstance(v, dict) else doc.__setitem__(k, v)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def listener(make_exporter):
    """serve() an exporter (closed port target, no step needed) behind a web config."""
    started = []

    def start(web_config: str | None):
        x = make_exporter(targets=["127.0.0.1:1"])
        web = WebConfigFile(web_config) if web_config else None
        httpd, _ = serve(x, "127.0.0.1:0", web)
        started.append(httpd)
        return httpd, httpd.server_port

    yield start
    for h in started:
        h.shutdown()
        h.server_close()


def test_tls_and_basic_auth_from_a_prometheus_web_config(listener, pki, tmp_path):
    _, port = listener(write_web_config(tmp_path / "web.yml", pki))
    url, ca = f"https://127.0.0.1:{port}", str(pki["ca"][0])
    r = requests.get(f"{url}/metrics", verify=ca, timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    for auth in (("prometheus", "wrong"), ("nobody", PASSWORD), ("prometheus", "x" * 100)):
        assert requests.get(f"{url}/metrics", verify=ca, auth=auth, timeout=5).status_code == 401
    r = requests.get(f"{url}/metrics", verify=ca, auth=("prometheus", PASSWORD), timeout=5)
    assert r.status_code == 200 and "coredns_anomaly_model_info" in r.text
    assert r.headers["Strict-Transport-Security"] == "max-age=31536000"
    # probes carry no credentials: health and readiness stay open (and say nothing else)
    for path in ("/-/healthy", "/-/ready"):
        assert requests.get(url + path, verify=ca, timeout=5).status_code == 200
    assert requests.get(f"{url}/", verify=ca, timeout=5).status_code == 401
    # plain HTTP on the TLS port gets nothing useful
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status()


def test_mutual_tls_requires_a_client_certificate_from_the_ca(listener, pki, tmp_path):
    web = write_web_config(
        tmp_path / "web.yml", pki,
        tls_server_config={"client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": str(pki["ca"][0])},
        basic_auth_users=None,
    )  # fmt: skip
    _, port = listener(web)
    url, ca = f"https://127.0.0.1:{port}/metrics", str(pki["ca"][0])
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, verify=ca, timeout=5)
    r = requests.get(url, verify=ca, cert=pki["client"], timeout=5)
    assert r.status_code == 200


def test_the_web_config_is_reloaded_when_it_changes_and_a_bad_edit_keeps_the_last_good_one(listener, pki, tmp_path, monkeypatch):  # fmt: skip
    monkeypatch.setattr(webconfig, "RELOAD_CHECK_SECONDS", 0.0)
    path = tmp_path / "web.yml"
    _, port = listener(write_web_config(path, pki))
    url, ca = f"https://127.0.0.1:{port}/metrics", str(pki["ca"][0])
    get = lambda auth: requests.get(url, verify=ca, auth=auth, timeout=5).status_code  # noqa: E731
    assert get(("prometheus", PASSWORD)) == 200
    path.write_text("basic_auth_users: [unclosed\n")  # a bad edit: still served, as before
    assert get(("prometheus", PASSWORD)) == 200
    write_web_config(path, pki)
    doc = yaml.safe_load(path.read_text())
    doc["basic_auth_users"] = {"grafana": HASH}  # the user is renamed
    path.write_text(yaml.safe_dump(doc))
    assert get(("grafana", PASSWORD)) == 200
    assert get(("prometheus", PASSWORD)) == 401


@pytest.mark.parametrize(
    "doc, words",
    [
        ({"tls_server_config": {"cert_file": "c"}}, ["needs cert_file and key_file"]),
        (
            {"tls_server_config": {"cert_file": "/nope.crt", "key_file": "/nope.key"}},
            ["tls_server_config", "No such file"],
        ),  # fmt: skip
        ({"tls_server_config": {"cipher_suites": ["X"]}}, ["cipher_suites", "not supported"]),
        (
            {
                "tls_server_config": {
                    "cert_file": "{crt}",
                    "key_file": "{key}",
                    "client_auth_type": "RequireAnyClientCert",
                }
            },
            ["RequireAnyClientCert", "refused"],
        ),  # fmt: skip
        (
            {
                "tls_server_config": {
                    "cert_file": "{crt}",
                    "key_file": "{key}",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            ["needs client_ca_file"],
        ),  # fmt: skip
        (
            {
                "tls_server_config": {
                    "cert_file": "{crt}",
                    "key_file": "{key}",
                    "min_version": "SSL3",
                }
            },
            ["min_version", "TLS12"],
        ),  # fmt: skip
        ({"basic_auth_users": {"u": "plaintext"}}, ["'u'", "not a bcrypt hash"]),
        ({"basic_auth_users": ["u"]}, ["basic_auth_users", "mapping"]),
        ({"http_server_config": {"headers": {"Set-Cookie": "x"}}}, ["Set-Cookie"]),
        ({"tls_config": {}}, ["unknown", "tls_config"]),
        ("[1, 2", ["web config"]),
    ],
)
def test_a_bad_web_config_is_refused_with_one_line_naming_the_key(tmp_path, pki, doc, words):
    path = tmp_path / "web.yml"
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc)
    path.write_text(text.replace("{crt}", str(pki["server"][0])).replace("{key}", str(pki["server"][1])))  # fmt: skip
    with pytest.raises(WebConfigError) as info:
        load_web_config(path)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_idle_and_stalled_connections_cannot_exhaust_the_listener(listener):
    httpd, port = listener(None)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(300)]
    stalled = []
    for _ in range(WORKERS // 2):  # started a request, never finish it
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        stalled.append(s)
    time.sleep(0.3)
    try:
        t0 = time.perf_counter()
        r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and time.perf_counter() - t0 < 1.0
        assert threading.active_count() - before <= 2, "a thread per connection"
    finally:
        for s in idle + stalled:
            s.close()


@pytest.mark.integration
def test_the_cli_serves_https_with_auth_scores_beside_a_stalled_target_and_stops_at_once(tmp_path, pki, page_server):  # fmt: skip
    page_server.set("/metrics", body=load_pages("normal")[0])
    slow = HostileServer("slow_headers", interval=0.05, hold=60)
    web = write_web_config(tmp_path / "web.yml", pki)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    timeout = 1.8  # most of each 2 s step waits on the stalled target
    proc = subprocess.Popen(
        [PYTHON, "-m", "coredns_anomaly", "exporter", "--model", str(MODEL_DIR),
         "--target", page_server.instance(), "--target", slow.instance(),
         "--listen", f"127.0.0.1:{port}", f"--web.config.file={web}",
         "--scrape-timeout", str(timeout), "--state-file", ""],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url, ca, auth = f"https://127.0.0.1:{port}/metrics", str(pki["ca"][0]), ("prometheus", PASSWORD)  # fmt: skip
        m, end = {}, time.monotonic() + 30
        while time.monotonic() < end and (value(m, "coredns_anomaly_steps_total") or 0) < 2:
            time.sleep(0.2)
            try:
                m = parse_metrics(requests.get(url, verify=ca, auth=auth, timeout=2).text)
            except requests.RequestException:
                assert proc.poll() is None, proc.stdout.read()
        assert value(m, "coredns_anomaly_steps_total") >= 2, "no steps"
        assert value(m, "coredns_anomaly_target_up", instance=page_server.instance()) == 1.0
        assert value(m, "coredns_anomaly_target_up", instance=slow.instance()) == 0.0
        assert value(m, "coredns_anomaly_target_errors_total", instance=slow.instance(), reason="timeout") >= 1  # fmt: skip
        assert value(m, "coredns_anomaly_step_duration_seconds") < timeout + 0.5
        assert requests.get(url, verify=ca, timeout=2).status_code == 401
        # SIGTERM lands while a step waits on the stalled target: the process leaves at once
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - t0 < 0.8, "SIGTERM waited on a stalled step"
        out = proc.stdout.read()
        assert "https://" in out and "basic auth" in out, out
        assert f"{slow.instance()}: scrape failed (timeout)" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        slow.close()
