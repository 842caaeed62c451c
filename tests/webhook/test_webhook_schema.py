"""Payload parsing and validation (webhook/schema.py)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_testlib import alert, payload

from coredns_anomaly.webhook.schema import (
    PayloadError,
    _validator,
    conforms_quickly,
    parse_delivery,
)

# Verbatim shape of an Alertmanager 0.27 webhook notification (resolved, two alerts).
ALERTMANAGER_SAMPLE = b"""{"receiver":"coredns-anomaly","status":"resolved","alerts":[{"status":"resolved",
"labels":{"alertname":"CoreDNSErrorsHigh","job":"coredns","namespace":"kube-system","severity":"warning"},
"annotations":{"description":"CoreDNS is returning SERVFAIL for 4.1% of requests.","runbook_url":
"https://runbooks.prometheus-operator.dev/runbooks/coredns/corednserrorshigh","summary":"CoreDNS is returning SERVFAIL."},
"startsAt":"2026-11-22T01:02:03.456789012Z","endsAt":"2026-11-22T01:17:03.456789012Z",
"generatorURL":"http://prometheus:9090/graph?g0.expr=sum+without%28pod%29&g0.tab=1","fingerprint":"2e4b1d3f0c9a8b7e"},
{"status":"resolved","labels":{"alertname":"CoreDNSAnomaly","instance":"10.0.0.7:9153","severity":"warning"},
"annotations":{},"startsAt":"2026-11-22T01:00:00+01:00","endsAt":"2026-11-22T00:30:00Z","generatorURL":"",
"fingerprint":"a1"}],"groupLabels":{"job":"coredns"},"commonLabels":{"job":"coredns","severity":"warning"},
"commonAnnotations":{},"externalURL":"http://alertmanager:9093","version":"4",
"groupKey":"{}/{severity=~\\"warning|critical\\"}:{job=\\"coredns\\"}","truncatedAlerts":0}"""


def test_real_alertmanager_payload():
    d = parse_delivery(ALERTMANAGER_SAMPLE)
    assert d.status == "resolved" and d.receiver == "coredns-anomaly" and len(d.alerts) == 2
    a = d.alerts[0]
    assert a.starts_at == "2026-11-22T01:02:03.456789Z"  # nanoseconds truncated, fixed width
    assert a.ends_at == "2026-11-22T01:17:03.456789Z"
    assert d.alerts[1].starts_at == "2026-11-22T00:00:00.000000Z"  # offset normalised to UTC
    assert d.raw == ALERTMANAGER_SAMPLE.decode()


def test_firing_alert_has_no_end():
    d = parse_delivery(json.dumps(payload(alert())).encode())
    assert d.alerts[0].ends_at is None


def test_hash_ignores_key_order_and_whitespace():
    p = payload(alert())
    a = parse_delivery(json.dumps(p).encode())
    b = parse_delivery(json.dumps(dict(reversed(list(p.items()))), indent=2).encode())
    assert a.body_sha256 == b.body_sha256


def test_minimal_payload_is_accepted():
    body = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": []}
    assert parse_delivery(json.dumps(body).encode()).alerts == []


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: p.update(version="3"), "$.version: '4' was expected"),
        (lambda p: p.pop("groupKey"), "'groupKey' is a required property"),
        (lambda p: p.update(alerts={}), "$.alerts: {} is not of type 'array'"),
        (
            lambda p: p["alerts"][0].update(startsAt="yesterday"),
            "$.alerts[0].startsAt: 'yesterday' is not a 'date-time'",
        ),
        (
            lambda p: p["alerts"][0]["labels"].update(instance=9153),
            "$.alerts[0].labels.instance: 9153 is not of type 'string'",
        ),
        (lambda p: p["alerts"][0].update(fingerprint=""), "$.alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(status="pending"), "'pending' is not one of"),
        (lambda p: p.update(truncatedAlerts=-1), "$.truncatedAlerts"),
        # SQLite cannot hold it: a 400 now, not an OverflowError (503) in the store forever.
        (lambda p: p.update(truncatedAlerts=2**63), "$.truncatedAlerts"),
        (lambda p: p.update(truncatedAlerts=1e300), "$.truncatedAlerts"),
    ],
)
def test_schema_errors_say_what_is_wrong(mutate, needle):
    p = payload(alert())
    mutate(p)
    with pytest.raises(PayloadError) as exc:
        parse_delivery(json.dumps(p).encode())
    assert needle in str(exc.value)
    assert str(exc.value).startswith("payload does not match the Alertmanager webhook schema")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "invalid JSON"),
        (b"{", "invalid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"version": NaN}', "NaN is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"1" * 5000, "invalid JSON"),
        (b"[]", "schema"),
    ],
)
def test_invalid_json(body, needle):
    with pytest.raises(PayloadError) as exc:
        parse_delivery(body)
    assert needle in str(exc.value)


def test_unpaired_surrogate_is_a_400_not_a_storage_crash():
    p = json.dumps(payload(alert())).replace("CoreDNSAnomaly", "\\ud800", 1)
    with pytest.raises(PayloadError, match="surrogate"):
        parse_delivery(p.encode())


def test_error_message_is_bounded():
    p = payload(alert())
    p["alerts"][0]["labels"]["x"] = ["y" * 100_000]
    with pytest.raises(PayloadError) as exc:
        parse_delivery(json.dumps(p).encode())
    assert len(str(exc.value)) < 600


def test_many_errors_are_summarised():
    p = payload(*[alert(str(i)) for i in range(10)])
    for a in p["alerts"]:
        a["status"] = "unknown"
    with pytest.raises(PayloadError, match=r"and 5 more"):
        parse_delivery(json.dumps(p).encode())


def test_schema_accepts_what_the_fast_path_accepts_on_samples():
    for body in (ALERTMANAGER_SAMPLE, json.dumps(payload(alert(), alert("2"))).encode()):
        p = json.loads(body)
        assert conforms_quickly(p)
        assert _validator.is_valid(p)


# -- the fast path never accepts what the schema rejects ---------------------------------------

_text = st.text(max_size=8)
_json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), _text
)
_anything = st.recursive(
    _json_scalar,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(_text, c, max_size=3),
    max_leaves=6,
)
_ABSENT = object()


def _mostly(valid, invalid=_anything):
    """Valid nine times in ten, else something else or absent: payloads near the boundary."""
    return st.integers(0, 19).flatmap(
        lambda n: valid if n < 18 else (invalid if n == 18 else st.just(_ABSENT))
    )


_times = st.sampled_from(
    [
        "2026-11-22T01:00:00Z",
        "0001-01-01T00:00:00Z",
        "2026-11-22T01:00:00.123456789+02:00",
        "2026-11-22t01:00:00z",
    ]
)
_bad_times = st.sampled_from(
    ["bad", "", "2026-02-30T00:00:00Z", "2026-11-22T01:00:00", "0001-01-01T00:00:00+01:00"]
)
_string_map = _mostly(
    st.dictionaries(_text, _text, max_size=3), st.dictionaries(_text, _json_scalar, max_size=3)
)
_alert_st = st.fixed_dictionaries(
    {
        "status": _mostly(
            st.sampled_from(["firing", "resolved"]), st.sampled_from(["Firing", "", 1])
        ),
        "labels": _string_map,
        "annotations": _string_map,
        "startsAt": _mostly(_times, _bad_times | _anything),
        "endsAt": _mostly(_times, _bad_times | _anything),
        "generatorURL": _mostly(_text),
        "fingerprint": _mostly(st.text(min_size=1, max_size=130), st.just("") | _anything),
    }
)
_payload_st = st.fixed_dictionaries(
    {
        "version": _mostly(st.just("4"), st.sampled_from(["3", 4, "4 "])),
        "groupKey": _mostly(st.text(min_size=1, max_size=8), st.just("") | _anything),
        "status": _mostly(st.sampled_from(["firing", "resolved"])),
        "receiver": _mostly(_text),
        "truncatedAlerts": _mostly(
            st.integers(0, 5) | st.just(2**63 - 1),
            st.integers(-2, -1) | st.floats(0, 3) | st.booleans() | st.integers(2**63, 2**70),
        ),
        "groupLabels": _string_map,
        "commonLabels": _string_map,
        "commonAnnotations": _string_map,
        "externalURL": _mostly(_text),
        "alerts": _mostly(st.lists(_alert_st, max_size=3)),
    }
)


def _drop_absent(x):
    if isinstance(x, dict):
        return {k: _drop_absent(v) for k, v in x.items() if v is not _ABSENT}
    if isinstance(x, list):
        return [_drop_absent(v) for v in x if v is not _ABSENT]
    return x


def test_fast_path_is_a_subset_of_the_schema():
    """conforms_quickly() may send valid payloads to jsonschema, never wave an invalid one through."""
    seen = {"fast": 0, "schema_valid": 0, "invalid": 0}

    @settings(
        max_examples=1500,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_payload_st)
    def check(p):
        p = _drop_absent(p)
        valid = _validator.is_valid(p)
        if conforms_quickly(p):
            seen["fast"] += 1
            assert valid, p
        else:
            seen["schema_valid" if valid else "invalid"] += 1

    check()
    print(seen)
    assert seen["fast"] > 100 and seen["invalid"] > 100, seen
