"""The instance chart page: alerts drawn on it, ranges marked on it land in the label export
(also what no alert caught), and the forms are CSRF-safe. The real-browser and real-Prometheus
version is tests/webhook/test_webhook_browser.py::test_mark_a_range_on_the_chart."""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from webhook_testlib import BASIC, alert, payload

from coredns_anomaly.webhook.chart import ChartData, Series, layout, promql_string, window
from coredns_anomaly.webhook.labels import read_label_file


@pytest.fixture
def settings(settings):
    return dataclasses.replace(settings, prometheus_url="")  # no Prometheus: the page says so


def _page(client, instance: str, **q) -> str:
    r = client.get(f"/instances/{instance}", query_string=q, headers=BASIC)
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_the_chart_draws_the_instances_alerts_and_says_what_it_lacks(client, post):
    post(payload(alert("a", instance="dns-a:53", starts_at="2026-11-22T01:00:00Z")))
    post(payload(alert("b", instance="dns-b:53", starts_at="2026-11-22T01:00:00Z")))
    html = _page(client, "dns-a:53", end="2026-11-22T02:00:00Z", hours=6)
    assert "set prometheus_url" in html
    assert html.count('class="band alert-none"') == 1  # dns-b's alert is not on dns-a's chart
    listing = client.get("/alerts?since=all", headers=BASIC).get_data(as_text=True)
    assert "/instances/dns-a:53?end=" in listing  # each alert links to its instance's chart


def test_a_range_marked_on_the_chart_is_a_verified_label(client, post):
    html = _page(client, "dns-a:53", end="2026-11-22T02:00:00Z")
    form = {
        "csrf_token": _csrf(html), "instance": "dns-a:53", "hours": "6",
        "start": "2026-11-22T01:10:00Z", "end": "2026-11-22T01:20:00Z",
        "verdict": "anomaly", "class": "cache_thrash", "comment": "missed: cache churn",
    }  # fmt: skip
    r = client.post("/instances/mark", data=form, headers=BASIC)
    assert r.status_code == 303 and "/instances/dns-a:53" in r.headers["Location"]
    normal = {**form, "start": "2026-11-22T01:30:00Z", "end": "2026-11-22T01:40:00Z",
              "verdict": "false_alarm", "class": "ignored"}  # fmt: skip
    assert client.post("/instances/mark", data=normal, headers=BASIC).status_code == 303
    recs = read_label_file(io.StringIO(client.get("/labels", headers=BASIC).get_data(as_text=True)))
    got = [(r.instance, r.verdict, r.anomaly_class, r.source, r.comment) for r in recs]
    assert got == [
        ("dns-a:53", "anomaly", "cache_thrash", "verified", "missed: cache churn"),
        ("dns-a:53", "false_alarm", "", "verified", "missed: cache churn"),
    ]
    html = _page(client, "dns-a:53", end="2026-11-22T02:00:00Z")
    assert 'class="band mark-anomaly"' in html and 'class="band mark-false_alarm"' in html
    first = re.search(r'<tr class="mark v-anomaly" data-id="(\d+)"', html).group(1)
    r = client.post(
        "/instances/unmark",
        data={"csrf_token": _csrf(html), "id": first, "instance": "dns-a:53"},
        headers=BASIC,
    )
    assert r.status_code == 303
    recs = read_label_file(io.StringIO(client.get("/labels", headers=BASIC).get_data(as_text=True)))
    assert [r.verdict for r in recs] == ["false_alarm"]


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ({"csrf_token": ""}, 403, b"form token"),
        ({"start": "yesterday"}, 400, b"RFC 3339"),
        ({"end": "2026-11-22T01:00:00Z"}, 400, b"end after it starts"),
        ({"end": "2027-01-22T01:00:00Z"}, 400, b"at most 31 days"),
        ({"verdict": "maybe"}, 400, b"unknown verdict"),
        ({"class": "no spaces allowed"}, 400, b"not a class name"),
        ({"instance": "*"}, 400, b"one CoreDNS target"),
    ],
)
def test_a_bad_mark_is_refused_and_stores_nothing(client, change, status, says):
    html = _page(client, "dns-a:53")
    form = {
        "csrf_token": _csrf(html), "instance": "dns-a:53", "start": "2026-11-22T01:10:00Z",
        "end": "2026-11-22T01:20:00Z", "verdict": "anomaly", "class": "x",
    }  # fmt: skip
    r = client.post("/instances/mark", data={**form, **change}, headers=BASIC)
    assert r.status_code == status and says in r.data
    assert client.get("/labels", headers=BASIC).get_data(as_text=True).count("\n") == 1


def test_cross_site_marks_are_refused(client):
    html = _page(client, "dns-a:53")
    form = {"csrf_token": _csrf(html), "instance": "dns-a:53", "start": "2026-11-22T01:10:00Z",
            "end": "2026-11-22T01:20:00Z", "verdict": "anomaly"}  # fmt: skip
    r = client.post("/instances/mark", data=form, headers={**BASIC, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


def test_instance_names_are_quoted_for_promql():
    assert promql_string('a"b\\c') == '"a\\"b\\\\c"'


def test_the_layout_puts_the_score_and_bands_in_the_frame():
    data = ChartData(score=Series("s", [0.0, 50.0, 100.0], [0.5, 3.0, 0.5]))
    lay = layout(data, 0.0, 100.0, [(40.0, 60.0, "none", "t")], [(-50.0, 10.0, "anomaly", "m")])
    xs = [float(p.split(",")[0]) for p in lay["score_points"].split()]
    assert xs == [0.0, 450.0, 900.0]
    assert lay["alerts"][0].x == 360.0 and lay["marks"][0].x == 0.0  # clipped to the frame
    assert 0 < lay["threshold_y"] < lay["height"]


def test_the_window_never_ends_in_the_future():
    from datetime import datetime, timezone

    now = datetime(2026, 12, 1, tzinfo=timezone.utc)
    start, end, hours = window("24", "2030-01-01T00:00:00Z", now)
    assert end == now.timestamp() and end - start == 24 * 3600 and hours == 24
    assert window("5", "garbage", now)[2] == 6  # only the offered spans
