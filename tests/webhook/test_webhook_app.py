"""The Flask app through its test client: receiver, auth, page, CSRF, export, metrics."""

from __future__ import annotations

import base64
import io
import re

import pytest
from webhook_testlib import BASIC, BEARER, PASSWORD, TOKEN, USER, alert, payload

from coredns_anomaly.webhook.app import create_app
from coredns_anomaly.webhook.config import ConfigError, Settings
from coredns_anomaly.webhook.labels import read_label_file
from coredns_anomaly.webhook.store import StoreError

JSON_BEARER = {**BEARER, "Content-Type": "application/json"}


def metric(client, name: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    m = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


# -- receiver ---------------------------------------------------------------------------------


def test_accepts_and_stores(post, store):
    r = post(payload(alert("a"), alert("b")))
    assert r.status_code == 200
    assert r.json == {"status": "ok", "delivery": 1, "stored": 2, "updated": 0, "duplicates": 0}
    assert store.counts()["alerts"] == 2


def test_repeat_is_acknowledged_and_counted(post, client):
    before = metric(client, "coredns_anomaly_webhook_alerts_duplicate_total")
    post(payload(alert("a")))
    r = post(payload(alert("a")))
    assert r.status_code == 200 and r.json["duplicates"] == 1 and r.json["stored"] == 0
    assert metric(client, "coredns_anomaly_webhook_alerts_duplicate_total") == before + 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "invalid_json"), (b'{"version": "4"}', "invalid_schema")],
)
def test_bad_payloads_are_400_with_a_message(post, client, store, body, reason):
    label = f'coredns_anomaly_webhook_deliveries_rejected_total{{reason="{reason}"}}'
    before = metric(client, label)
    r = post(body)
    assert r.status_code == 400
    assert r.json["status"] == "error" and r.json["error"]
    assert metric(client, label) == before + 1
    assert store.counts()["deliveries"] == 0


def test_oversized_is_413(tmp_path, settings):
    from dataclasses import replace

    app = create_app(replace(settings, max_body_bytes=2048))
    c = app.test_client()
    big = payload(alert(annotations={"description": "x" * 4000}))
    r = c.post("/webhook", json=big, headers=BEARER)
    assert r.status_code == 413
    assert "larger than 2048" in r.json["error"]
    # No Content-Length (chunked): the limit applies while reading, as gunicorn presents it.
    chunked = c.post(
        "/webhook",
        input_stream=io.BytesIO(b"{" * 5000),
        headers={**BEARER, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.status_code == 413


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": "Basic " + base64.b64encode(f"{USER}:nope".encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(f"x{USER}:{PASSWORD}".encode()).decode()},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
    ],
)
def test_wrong_or_missing_credentials_are_401(post, store, headers):
    r = post(payload(alert()), headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert store.counts()["deliveries"] == 0


@pytest.mark.parametrize("headers", [BEARER, BASIC, {"Authorization": f"bearer   {TOKEN}  "}])
def test_either_credential_works(post, headers):
    assert post(payload(alert()), headers=headers).status_code == 200


def test_storage_failure_is_503_so_alertmanager_retries(post, store, monkeypatch, client):
    def broken(*a, **k):
        raise StoreError("disk I/O error")

    monkeypatch.setattr(store, "store_delivery", broken)
    r = post(payload(alert()))
    assert r.status_code == 503
    assert metric(client, "coredns_anomaly_webhook_store_errors_total") >= 1


def test_real_storage_failure_is_5xx(post, store, settings, tmp_path):
    """Not a mock: the database file is replaced by garbage under the running app."""
    from pathlib import Path

    assert post(payload(alert("a"))).status_code == 200
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(settings.db + suffix).unlink(missing_ok=True)
    Path(settings.db).write_bytes(b"garbage" * 1000)
    assert post(payload(alert("b"))).status_code == 503


def test_truncated_alerts_are_counted(post, client):
    p = payload(alert())
    p["truncatedAlerts"] = 3
    assert post(p).status_code == 200
    assert metric(client, "coredns_anomaly_webhook_alerts_truncated_total") >= 3


# -- starting ---------------------------------------------------------------------------------


def test_refuses_to_start_without_credentials(tmp_path):
    with pytest.raises(ConfigError, match="allow-unauthenticated"):
        create_app(Settings(db=str(tmp_path / "x.db")))


def test_runs_open_only_when_told_and_says_so(tmp_path, caplog):
    app = create_app(Settings(db=str(tmp_path / "x.db"), allow_unauthenticated=True))
    assert "WITHOUT authentication" in caplog.text
    assert app.test_client().post("/webhook", json=payload(alert())).status_code == 200


def test_credentials_from_files_are_trimmed_like_prometheus(tmp_path):
    (tmp_path / "token").write_text(f"  {TOKEN}\n")
    (tmp_path / "pw").write_text(f"{PASSWORD}\n")
    s = Settings(
        db=str(tmp_path / "x.db"),
        bearer_token_file=str(tmp_path / "token"),
        basic_auth_username=USER,
        basic_auth_password_file=str(tmp_path / "pw"),
    )
    c = create_app(s).test_client()
    assert c.post("/webhook", json=payload(alert()), headers=BEARER).status_code == 200
    assert c.post("/webhook", json=payload(alert("2")), headers=BASIC).status_code == 200


def test_empty_or_missing_secret_file_is_a_config_error(tmp_path):
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        create_app(Settings(db=str(tmp_path / "x.db"), bearer_token_file=str(tmp_path / "empty")))
    with pytest.raises(ConfigError, match="cannot read"):
        create_app(Settings(db=str(tmp_path / "x.db"), bearer_token_file=str(tmp_path / "missing")))


# -- health and metrics -----------------------------------------------------------------------


def test_health_endpoints_need_no_credentials(client):
    assert client.get("/-/healthy").status_code == 200
    assert client.get("/-/ready").data == b"OK\n"


def test_metrics(client, post):
    post(payload(alert()))
    post(b"nope")
    post(payload(alert()), headers={})
    text = client.get("/metrics").get_data(as_text=True)
    for name in (
        "coredns_anomaly_webhook_deliveries_received_total",
        'coredns_anomaly_webhook_deliveries_rejected_total{reason="unauthorized"}',
        'coredns_anomaly_webhook_alerts_stored_total{status="firing"}',
        "coredns_anomaly_webhook_alerts_duplicate_total",
        "coredns_anomaly_webhook_delivery_duration_seconds_bucket",
    ):
        assert name in text


# -- feedback page ----------------------------------------------------------------------------


def _form(html: str, fingerprint: str) -> dict[str, str]:
    row = re.search(
        rf'<tr id="[^"]+"[^>]*data-fingerprint="{fingerprint}".*?</tr>', html, re.S
    ).group(0)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', row))
    return {k: v.replace("&amp;", "&") for k, v in fields.items()}


def test_page_needs_credentials(client):
    r = client.get("/alerts")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


def test_page_lists_alerts_with_model_fields(client, post):
    post(payload(alert("a", instance="dns-a:53")))
    post(
        payload(
            alert(
                "b",
                alertname="CoreDNSErrorsHigh",
                instance=None,
                annotations={"summary": "SERVFAIL"},
            )
        )
    )
    r = client.get("/alerts", headers=BASIC)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "dns-a:53" in html and "1.42" in html and "upstream_latency" in html
    assert "upstream_latency_p99" in html and "CoreDNSErrorsHigh" in html
    assert "http://prometheus:9090/graph?g0.expr=coredns_anomaly_score" in html  # score graph link
    assert (
        r.headers["X-Frame-Options"] == "DENY"
        and "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    )
    filtered = client.get("/alerts?alertname=CoreDNSErrorsHigh", headers=BASIC).get_data(
        as_text=True
    )
    assert "dns-a:53" not in filtered and "SERVFAIL" in filtered


def _class_field(html: str, fingerprint: str) -> str:
    row = re.search(
        rf'<tr id="[^"]+"[^>]*data-fingerprint="{fingerprint}".*?</tr>', html, re.S
    ).group(0)
    return re.search(r'<input name="class"[^>]*value="([^"]*)"', row).group(1)


def test_the_verdict_form_starts_from_the_models_guess_unless_it_is_unknown(client, post):
    post(payload(alert("k", annotations={"anomaly_type": "upstream_loss"})))
    post(payload(alert("u", instance="dns-u:53", annotations={"anomaly_type": "unknown"})))
    html = client.get("/alerts", headers=BASIC).get_data(as_text=True)
    assert _class_field(html, "k") == "upstream_loss"
    assert _class_field(html, "u") == ""  # no guess to confirm: the engineer names it


def test_the_suggested_classes_are_the_models():
    from coredns_anomaly.lab.faults import FAULT_CLASSES
    from coredns_anomaly.webhook.config import DEFAULT_CLASSES

    assert DEFAULT_CLASSES == FAULT_CLASSES


def test_page_escapes_payload_text_and_drops_script_links(client, post):
    a = alert("x", annotations={"summary": "<script>alert(1)</script>"})
    a["generatorURL"] = "javascript:alert(1)"
    post(payload(a))
    html = client.get("/alerts", headers=BASIC).get_data(as_text=True)
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html


def test_mark_verdict_and_export(client, post):
    post(payload(alert("a", status="resolved", ends_at="2026-11-22T01:30:00Z")))
    html = client.get("/alerts?verdict=none&since=all", headers=BASIC).get_data(as_text=True)
    form = _form(html, "a")
    r = client.post(
        "/alerts/verdict",
        data={**form, "verdict": "anomaly", "class": "upstream_latency", "comment": "confirmed"},
        headers=BASIC,
    )
    assert r.status_code == 303 and r.headers["Location"].startswith(
        "/alerts?verdict=none&since=all#a-a-"
    )
    export = client.get("/labels", headers=BASIC)
    assert export.content_type.startswith("text/csv")
    (rec,) = read_label_file(io.StringIO(export.get_data(as_text=True)))
    assert (rec.instance, rec.verdict, rec.anomaly_class, rec.source, rec.comment) == (
        "10.0.0.1:9153",
        "anomaly",
        "upstream_latency",
        "verified",
        "confirmed",
    )
    r = client.post("/alerts/verdict", data={**form, "verdict": "clear"}, headers=BASIC)
    assert r.status_code == 303
    assert (
        read_label_file(io.StringIO(client.get("/labels", headers=BASIC).get_data(as_text=True)))
        == []
    )


def test_weak_labels_on_request_only_for_coredns_alerts_that_name_an_instance(client, post):
    post(payload(alert("m", alertname="CoreDNSErrorsHigh", instance=None)))  # fleet-wide
    post(payload(alert("w", alertname="Watchdog", instance="10.0.0.1:9153")))  # not CoreDNS
    post(payload(alert("l", alertname="CoreDNSLatencyHigh", instance="10.0.0.2:9153")))
    post(payload(alert("ours")))
    assert client.get("/labels", headers=BASIC).get_data(as_text=True).count("\n") == 1
    weak = read_label_file(
        io.StringIO(client.get("/labels?include_weak=1", headers=BASIC).get_data(as_text=True))
    )
    assert [(r.alertname, r.source, r.instance, r.anomaly_class) for r in weak] == [
        ("CoreDNSLatencyHigh", "weak", "10.0.0.2:9153", "CoreDNSLatencyHigh")
    ]
    assert client.get("/labels?since=whenever", headers=BASIC).status_code == 400


@pytest.mark.parametrize(
    ("change", "headers"),
    [
        ({"csrf_token": ""}, {}),
        ({"csrf_token": "123.deadbeef"}, {}),
        ({}, {"Origin": "http://evil.example"}),
        ({}, {"Sec-Fetch-Site": "cross-site"}),
    ],
)
def test_verdict_posts_are_csrf_safe(client, post, change, headers):
    post(payload(alert("a")))
    form = _form(client.get("/alerts", headers=BASIC).get_data(as_text=True), "a")
    r = client.post(
        "/alerts/verdict",
        data={**form, **change, "verdict": "anomaly"},
        headers={**BASIC, **headers},
    )
    assert r.status_code == 403
    assert client.get("/labels", headers=BASIC).get_data(as_text=True).count("\n") == 1


def test_csrf_token_is_bound_to_the_principal(client, post):
    post(payload(alert("a")))
    form = _form(client.get("/alerts", headers=BASIC).get_data(as_text=True), "a")
    assert (
        client.post(
            "/alerts/verdict", data={**form, "verdict": "anomaly"}, headers=BEARER
        ).status_code
        == 403
    )
    same_origin = {**BASIC, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert (
        client.post(
            "/alerts/verdict", data={**form, "verdict": "anomaly"}, headers=same_origin
        ).status_code
        == 303
    )


def test_verdict_input_errors(client, post):
    post(payload(alert("a")))
    form = _form(client.get("/alerts", headers=BASIC).get_data(as_text=True), "a")
    assert (
        client.post("/alerts/verdict", data={**form, "verdict": "maybe"}, headers=BASIC).status_code
        == 400
    )
    bad_class = {**form, "verdict": "anomaly", "class": "<b>"}
    assert client.post("/alerts/verdict", data=bad_class, headers=BASIC).status_code == 400
    missing = {**form, "fingerprint": "zzz", "verdict": "anomaly"}
    assert client.post("/alerts/verdict", data=missing, headers=BASIC).status_code == 404
    offsite = {**form, "verdict": "false_alarm", "next": "//evil.example/alerts"}
    r = client.post("/alerts/verdict", data=offsite, headers=BASIC)
    assert r.status_code == 303 and r.headers["Location"].startswith("/alerts#")


def test_pagination(client, post):
    for i in range(105):
        post(payload(alert(f"p{i}", starts_at=f"2026-11-22T01:{i // 60:02d}:{i % 60:02d}Z")))
    first = client.get("/alerts", headers=BASIC).get_data(as_text=True)
    assert "page 1 of 2" in first and first.count('class="alert ') == 100
    second = client.get("/alerts?page=2", headers=BASIC).get_data(as_text=True)
    assert second.count('class="alert ') == 5


def test_receiver_edge_cases(client):
    r = client.get("/webhook", headers=BEARER)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    bad_length = client.post(
        "/webhook", data=b"{}", headers=JSON_BEARER, environ_overrides={"CONTENT_LENGTH": "ten"}
    )
    assert bad_length.status_code == 400 and "Content-Length" in bad_length.json["error"]
    short = client.post(
        "/webhook", data=b"{}", headers=JSON_BEARER, environ_overrides={"CONTENT_LENGTH": "100"}
    )
    assert short.status_code == 400
    # No length and a server that does not terminate the stream: nothing is read.
    unterminated = client.post(
        "/webhook",
        input_stream=io.BytesIO(b'{"version": "4"}'),
        headers={**JSON_BEARER, "Transfer-Encoding": "identity"},
        environ_overrides={"wsgi.input_terminated": False, "CONTENT_LENGTH": ""},
    )
    assert unterminated.status_code == 400 and "invalid JSON" in unterminated.json["error"]


def test_unexpected_error_is_500_so_alertmanager_retries(post, store, monkeypatch, client):
    monkeypatch.setattr(store, "store_delivery", lambda d: 1 / 0)
    r = post(payload(alert()))
    assert r.status_code == 500 and r.json["status"] == "error"
