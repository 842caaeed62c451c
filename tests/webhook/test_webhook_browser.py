"""The feedback page in a real headless Chromium (Debian's chromium + chromedriver, selenium).

Load the page, mark alerts, see the label export change. With COREDNS_ANOMALY_SCREENSHOTS=DIR
the screenshots for docs/webhook.md are written there (docs/screenshots/webhook-*.png).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
from webhook_testlib import alert, payload

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
USER, PASSWORD = "oncall", "s3cret-password"


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            "needs Debian's chromium and chromium-driver (scripts/bootstrap.sh installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1500,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _post(url: str, body: dict) -> None:
    req = urllib.request.Request(
        f"{url}/webhook",
        data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer bench-token", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def _export(driver, query: str = "") -> list[dict[str, str]]:
    """Fetch /labels from inside the page (same origin, same credentials as the engineer)."""
    text = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/labels' + arguments[0]).then(r => r.text()).then(done, e => done('ERROR ' + e));",
        query,
    )
    assert not text.startswith("ERROR"), text
    return list(csv.DictReader(io.StringIO(text)))


def _row(driver, fingerprint: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'tr[data-fingerprint="{fingerprint}"]')


def _fingerprints(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        r.get_attribute("data-fingerprint")
        for r in driver.find_elements(By.CSS_SELECTOR, "tr.alert")
    ]


def test_mark_alerts_and_export(server_factory, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    (tmp_path / "pw").write_text(PASSWORD)
    server = server_factory(
        workers=2,
        threads=2,
        extra_args=[
            "--basic-auth-username",
            USER,
            "--basic-auth-password-file",
            str(tmp_path / "pw"),
            "--prometheus-url",
            "http://prometheus.example:9090",
        ],
    )
    _post(
        server.url,
        payload(
            alert(
                "aa01",
                instance="10.0.0.1:9153",
                starts_at="2026-11-22T01:00:00Z",
                annotations={
                    "summary": "CoreDNS 10.0.0.1:9153 upstream slow",
                    "score": "2.31",
                    "anomaly_type": "upstream_latency",
                    "top_features": "upstream_latency_p99, servfail_ratio",
                },
            ),
            alert(
                "bb02",
                instance="10.0.0.2:9153",
                starts_at="2026-11-22T01:05:00Z",
                annotations={
                    "summary": "CoreDNS 10.0.0.2:9153 anomalous",
                    "score": "1.07",
                    "anomaly_type": "query_flood",
                    "top_features": "requests_rate, nxdomain_ratio",
                },
            ),
        ),
    )
    _post(
        server.url,
        payload(
            alert(
                "bb02",
                status="resolved",
                instance="10.0.0.2:9153",
                starts_at="2026-11-22T01:05:00Z",
                ends_at="2026-11-22T01:25:00Z",
                annotations={"score": "1.07", "anomaly_type": "query_flood"},
            ),
        ),
    )
    _post(
        server.url,
        payload(
            alert(
                "cc03",
                alertname="CoreDNSErrorsHigh",
                instance=None,
                starts_at="2026-11-22T00:40:00Z",
                annotations={"summary": "CoreDNS is returning SERVFAIL for 4.2% of requests."},
            ),
            group_key='{}:{alertname="CoreDNSErrorsHigh"}',
        ),
    )

    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth}})
    browser.get(f"{server.url}/alerts?since=all")
    # Verdict buttons submit a form and the page reloads (post/redirect/get): a row found just
    # before the reload goes stale, so the waits retry on that instead of failing.
    wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(ec.presence_of_element_located((By.ID, "alerts")))

    rows = browser.find_elements(By.CSS_SELECTOR, "tr.alert")
    assert len(rows) == 3
    first = _row(browser, "aa01")
    assert first.find_element(By.CSS_SELECTOR, "td.score").text == "2.31"
    assert first.find_element(By.CSS_SELECTOR, "td.type").text == "upstream_latency"
    assert "upstream_latency_p99" in first.find_element(By.CSS_SELECTOR, "td.features").text
    assert "firing" in first.get_attribute("class")
    assert "resolved" in _row(browser, "bb02").get_attribute("class")
    links = [a.get_attribute("href") for a in first.find_elements(By.CSS_SELECTOR, "td.links a")]
    assert any(
        h.startswith("http://prometheus.example:9090/graph?g0.expr=coredns_anomaly_score")
        for h in links
    )
    assert _export(browser) == []
    _shoot(browser, tmp_path, "webhook-alerts.png")

    # An engineer confirms the first alert, with its class, and calls the second a false alarm.
    cls = first.find_element(By.NAME, "class")
    cls.clear()
    cls.send_keys("upstream_latency")
    first.find_element(By.NAME, "comment").send_keys("resolver pool degraded")
    first.find_element(By.CSS_SELECTOR, "button.btn-anomaly").click()
    wait.until(lambda d: "v-anomaly" in _row(d, "aa01").get_attribute("class"))
    assert (
        "anomaly: upstream_latency"
        in _row(browser, "aa01").find_element(By.CSS_SELECTOR, ".current").text
    )

    _row(browser, "bb02").find_element(By.CSS_SELECTOR, "button.btn-false").click()
    wait.until(lambda d: "v-false_alarm" in _row(d, "bb02").get_attribute("class"))
    assert browser.find_element(By.ID, "count-verdicts").text == "2"

    labels = _export(browser)
    assert [(r["instance"], r["verdict"], r["class"], r["source"]) for r in labels] == [
        ("10.0.0.1:9153", "anomaly", "upstream_latency", "verified"),
        ("10.0.0.2:9153", "false_alarm", "", "verified"),
    ]
    assert (
        labels[1]["start"] == "2026-11-22T01:05:00Z" and labels[1]["end"] == "2026-11-22T01:25:00Z"
    )
    assert labels[0]["comment"] == "resolver pool degraded"
    _shoot(browser, tmp_path, "webhook-labelled.png")

    # The mixin's alert, unjudged, is summed over the fleet (no instance): it cannot say which
    # CoreDNS was anomalous, so it is not a weak label even on request.
    weak = [r for r in _export(browser, "?include_weak=1") if r["source"] == "weak"]
    assert weak == []

    # Filters: only what nobody has judged yet.
    Select(browser.find_element(By.NAME, "verdict")).select_by_value("none")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait.until(lambda d: "verdict=none" in d.current_url)
    wait.until(
        lambda d: _fingerprints(d) == ["cc03"],
        message="the unjudged filter should show only cc03",
    )

    # Clearing a verdict removes it from the export.
    browser.get(f"{server.url}/alerts?since=all&verdict=anomaly")
    _row(browser, "aa01").find_element(By.CSS_SELECTOR, "button.btn-clear").click()
    # The reloaded page (its table present) no longer lists aa01; an empty page mid-reload does
    # not count.
    wait.until(lambda d: d.find_elements(By.ID, "alerts") and "aa01" not in _fingerprints(d))
    assert [r["verdict"] for r in _export(browser)] == ["false_alarm"]


def test_page_without_credentials_is_refused(server_factory, browser):
    server = server_factory(workers=1, threads=1)
    browser.get(f"{server.url}/alerts")
    assert "unauthorized" in browser.page_source


def _shoot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    target = os.environ.get("COREDNS_ANOMALY_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(target) / name)


class _AttackPage:
    """The attacker's site: a page on another loopback origin (127.0.0.2) whose form
    auto-submits to the webhook as text/plain, the one encoding that can carry a JSON body
    without CORS (name = everything up to the last quote, value = the rest)."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        body = {**payload(alert("csrf-poison", instance=None), group_key="csrf"), "x": "="}
        doc = json.dumps(body)  # ends with "x": "="}
        name, _, value = doc.rpartition("=")
        assert json.loads(name + "=" + value + "\r\n") == body  # what the browser sends
        import html

        page = (
            "<!doctype html><title>cute cats</title>"
            f'<form id="f" method="POST" action="{target}/webhook" enctype="text/plain">'
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            "</form><script>document.getElementById('f').submit()</script>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _scrape(url: str) -> dict[str, float]:
    out = {}
    for line in urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode().splitlines():
        if line.startswith("coredns_anomaly_webhook_") and " " in line:
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_cross_site_form_with_cached_login_stores_nothing(server_factory, browser, tmp_path):
    """Issue 13's CSRF: an engineer logged in to the page (the browser caches the basic-auth
    login), then visits another site whose form auto-submits to /webhook."""
    import sqlite3

    from selenium.webdriver.support.ui import WebDriverWait

    (tmp_path / "pw").write_text(PASSWORD)
    server = server_factory(
        workers=1,
        extra_args=[
            "--basic-auth-username",
            USER,
            "--basic-auth-password-file",
            str(tmp_path / "pw"),
        ],
    )
    wait = WebDriverWait(browser, 20)
    # Log in the way a person's browser remembers it: credentials in the URL once, then cached.
    browser.get(f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}/alerts")
    wait.until(lambda d: "No alerts match" in d.page_source)
    browser.get(f"{server.url}/alerts")  # no credentials in this URL: the cache answers
    wait.until(
        lambda d: "No alerts match" in d.page_source, message="the browser did not cache the login"
    )

    attacker = _AttackPage(server.url)
    try:
        browser.get(attacker.url)
        wait.until(lambda d: d.current_url.endswith("/webhook") and '"status"' in d.page_source)
        answer = browser.page_source
    finally:
        attacker.close()
    conn = sqlite3.connect(server.db)
    try:
        stored = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
    finally:
        conn.close()
    assert stored == 0, f"the cross-site form stored an alert: {answer}"
    m = _scrape(server.url)
    # The post reached the receiver *with* the cached login (else it would be "unauthorized")
    # and was refused as cross-site.
    assert m['coredns_anomaly_webhook_deliveries_rejected_total{reason="cross_site"}'] == 1, (
        answer,
        m,
    )
    assert m['coredns_anomaly_webhook_deliveries_rejected_total{reason="unauthorized"}'] == 0
    assert "cross-site request refused" in answer


def _backfilled_prometheus(tmp_path: Path, instance: str, t0: float):
    """A real Prometheus holding two hours of the exporter's series for `instance` from t0, with
    an anomaly (score 2.5, two features) at t0 + 60 min for 10 minutes. Backfilled with promtool:
    a test cannot wait for an exporter to produce hours of history."""
    from coredns_anomaly.lab import prometheus

    lines = ["# TYPE coredns_anomaly_score gauge"]
    contrib = []
    for k in range(0, 2 * 3600, 15):
        t = t0 + k
        bad = 3600 <= k < 4200
        lines.append(
            f'coredns_anomaly_score{{instance="{instance}"}} {2.5 if bad else 0.3} {t:.0f}'
        )
        if bad:
            contrib.append(
                f'coredns_anomaly_feature_contribution{{instance="{instance}",feature="cache_evictions_rate"}} 4.0 {t:.0f}'
            )
            contrib.append(
                f'coredns_anomaly_feature_contribution{{instance="{instance}",feature="dns_latency_p90"}} 1.5 {t:.0f}'
            )
    om = tmp_path / "exporter.om"
    om.write_text(
        "\n".join(
            [
                *lines,
                "# TYPE coredns_anomaly_feature_contribution gauge",
                *sorted(contrib, key=lambda x: (x.split()[0], x)),
            ]
        )
        + "\n# EOF\n"
    )
    prometheus.backfill_openmetrics(om, tmp_path / "tsdb")
    return prometheus.serving(tmp_path / "tsdb", tmp_path)


def test_mark_a_range_on_the_chart(server_factory, browser, tmp_path):
    """Look, then label: the chart shows the score and top features from the real Prometheus
    with the alert on it; a drag across it marks a range, which lands in the label export."""
    import time
    from datetime import datetime, timezone

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if not shutil.which("prometheus") or not shutil.which("promtool"):
        pytest.fail("prometheus and promtool are needed: run `make setup`")
    instance = "10.0.0.1:9153"
    t0 = (int(time.time()) // 3600) * 3600 - 3 * 3600  # history from three hours ago
    iso = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    (tmp_path / "prom").mkdir()
    with _backfilled_prometheus(tmp_path / "prom", instance, t0) as prom:
        (tmp_path / "pw").write_text(PASSWORD)
        server = server_factory(
            workers=1, threads=2,
            extra_args=["--basic-auth-username", USER, "--basic-auth-password-file",
                        str(tmp_path / "pw"), "--prometheus-url", prom],
        )  # fmt: skip
        _post(
            server.url,
            payload(
                alert("ch01", instance=instance, status="resolved", starts_at=iso(t0 + 3600),
                      ends_at=iso(t0 + 4200),
                      annotations={"score": "2.5", "anomaly_type": "unknown"}),
            ),
        )  # fmt: skip
        auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": auth}})
        browser.get(f"{server.url}/alerts?since=all")
        wait = WebDriverWait(browser, 15, ignored_exceptions=(StaleElementReferenceException,))
        # the unknown type: the verdict form starts empty
        assert _row(browser, "ch01").find_element(By.NAME, "class").get_attribute("value") == ""
        _row(browser, "ch01").find_element(By.CSS_SELECTOR, "td.instance a").click()
        wait.until(lambda d: d.find_elements(By.ID, "score-line"))
        points = browser.find_element(By.ID, "score-line").get_attribute("points").split()
        assert len(points) > 100  # two hours of score from Prometheus, not a placeholder
        assert browser.find_elements(By.CSS_SELECTOR, "rect.alert-none")  # the alert, unjudged
        legend = browser.find_element(By.CLASS_NAME, "features-legend").text
        assert "cache_evictions_rate" in legend and "dns_latency_p90" in legend
        assert not browser.find_elements(By.ID, "chart-problem")

        # An engineer drags across the spike and labels it with a class the model lacks.
        chart = browser.find_element(By.ID, "chart")
        w = chart.size["width"]
        # the spike sits at 89% of the 6 h window (it ends 30 min after the alert); offsets
        # are from the chart's centre
        ActionChains(browser).move_to_element_with_offset(chart, int(w * 0.37), 0).click_and_hold().move_by_offset(
            int(w * 0.05), 0
        ).release().perform()  # fmt: skip
        start = browser.find_element(By.ID, "mark-start").get_attribute("value")
        end = browser.find_element(By.ID, "mark-end").get_attribute("value")
        assert start and end and start < end
        browser.find_element(By.NAME, "class").send_keys("cache_pollution")
        browser.find_element(By.NAME, "comment").send_keys("cache full of junk after the flood")
        _shoot(browser, tmp_path, "webhook-chart.png")
        browser.find_element(By.ID, "mark-submit").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "rect.mark-anomaly"))
        _shoot(browser, tmp_path, "webhook-chart-marked.png")
        labels = _export(browser)
    t_start = (
        datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    )
    assert t0 + 3000 < t_start < t0 + 4200, "the drag landed on the spike"
    assert [
        (r["instance"], r["verdict"], r["class"], r["source"], r["start"], r["end"]) for r in labels
    ] == [(instance, "anomaly", "cache_pollution", "verified", start, end)]
