"""Hypothesis strategies for bad webhook deliveries: every example must be refused with 4xx.

Three families: a valid Alertmanager payload with one guaranteed-invalid mutation; arbitrary
JSON (almost never a valid payload; the schema is the judge); and byte-level damage (cut short,
invalid UTF-8, random bytes, hostile JSON such as deep nesting, NaN, lone surrogates).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from webhook_testlib import alert, payload

from coredns_anomaly.webhook.schema import _validator

TOP_REQUIRED = ("version", "groupKey", "status", "receiver", "alerts")
ALERT_REQUIRED = ("status", "labels", "startsAt", "fingerprint")
STRING_MAPS = ("groupLabels", "commonLabels", "commonAnnotations")
# Big, slow, filtered examples are the point here; every run draws anew.
FUZZ_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _scalar,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)
_non_string = _json.filter(lambda v: not isinstance(v, str))
_non_object = _json.filter(lambda v: not isinstance(v, dict))
_non_array = _json.filter(lambda v: not isinstance(v, list))
_bad_time = st.one_of(
    st.sampled_from(
        [
            "",
            "now",
            "2026-11-22",
            "2026-11-22T03:00:00",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+00:01",
            "2026-11-22T03:00:00+1:00",
            "１９７０-01-01T00:00:00Z",
            "2026-11-22T03:00:00Z\n",
        ]
    ),
    st.text(max_size=30).filter(lambda s: not _is_time(s)),
    _non_string,
)
_bad_int = st.one_of(
    st.integers(max_value=-1),
    st.text(max_size=5),
    st.booleans(),
    st.lists(_scalar, max_size=2),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f)),
)


def _is_time(s: str) -> bool:
    from coredns_anomaly.webhook.timefmt import parse_rfc3339

    try:
        parse_rfc3339(s)
    except ValueError:
        return False
    return True


def _bad_string_map():
    return _non_object | st.dictionaries(st.text(max_size=8), _non_string, min_size=1, max_size=3)


@st.composite
def mutated_payloads(draw) -> Any:
    """A valid delivery with one mutation that the schema must reject."""
    n = draw(st.integers(1, 3))
    p = payload(*[alert(f"fp{i}", instance=f"10.0.0.{i}:9153") for i in range(n)])
    target = draw(st.sampled_from(["top", "alert", "whole"]))
    if target == "whole":
        return draw(_non_object)
    if target == "top":
        key = draw(st.sampled_from([*TOP_REQUIRED, "truncatedAlerts", *STRING_MAPS, "externalURL"]))
        how = draw(st.sampled_from(["drop", "break"])) if key in TOP_REQUIRED else "break"
        if how == "drop":
            del p[key]
        elif key == "version":
            p[key] = draw(_json.filter(lambda v: v != "4"))
        elif key == "groupKey":
            p[key] = draw(_non_string | st.just(""))
        elif key == "status":
            p[key] = draw(_json.filter(lambda v: v not in ("firing", "resolved")))
        elif key in ("receiver", "externalURL"):
            p[key] = draw(_non_string)
        elif key == "alerts":
            p[key] = draw(_non_array)
        elif key == "truncatedAlerts":
            p[key] = draw(_bad_int)
        else:
            p[key] = draw(_bad_string_map())
        return p
    a = p["alerts"][draw(st.integers(0, n - 1))]
    key = draw(st.sampled_from([*ALERT_REQUIRED, "annotations", "endsAt", "generatorURL", "item"]))
    if key == "item":
        p["alerts"][0] = draw(_non_object)
    elif key in ALERT_REQUIRED and draw(st.booleans()):
        del a[key]
    elif key == "status":
        a[key] = draw(_json.filter(lambda v: v not in ("firing", "resolved")))
    elif key in ("labels", "annotations"):
        a[key] = draw(_bad_string_map())
    elif key in ("startsAt", "endsAt"):
        a[key] = draw(_bad_time)
    elif key == "generatorURL":
        a[key] = draw(_non_string)
    else:  # fingerprint
        a[key] = draw(st.just("") | st.text(min_size=129, max_size=200) | _non_string)
    return p


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def json_bodies():
    """Arbitrary JSON documents, excluding the (vanishingly rare) valid payload."""
    return _json.filter(lambda v: not _validator.is_valid(v)).map(encode)


@st.composite
def damaged_bodies(draw) -> bytes:
    good = encode(payload(*[alert(f"d{i}") for i in range(draw(st.integers(1, 2)))]))
    kind = draw(
        st.sampled_from(
            ["cut", "bad_utf8", "random", "nest", "nan", "surrogate", "bignum", "dupe_junk"]
        )
    )
    if kind == "cut":
        return good[: draw(st.integers(0, len(good) - 1))]
    if kind == "bad_utf8":
        at = draw(st.integers(0, len(good)))
        return (
            good[:at]
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
            + good[at:]
        )
    if kind == "random":
        return draw(st.binary(max_size=300).filter(lambda b: not _valid_bytes(b)))
    if kind == "nest":
        depth = draw(st.integers(1_000, 50_000))
        opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return opener * depth + b"1" + closer * depth
    if kind == "nan":
        return good.replace(
            b'"truncatedAlerts": 0',
            b'"truncatedAlerts": ' + draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"])),
        )
    if kind == "surrogate":
        return good.replace(
            b"CoreDNSAnomaly", draw(st.sampled_from([b"\\ud800", b"\\udfff", b"x\\ud83d"])), 1
        )
    if kind == "bignum":
        return good.replace(
            b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + b"9" * draw(st.integers(4301, 6000))
        )
    # valid JSON, wrong document: the payload wrapped in junk
    return b'{"junk": ' + good + b"}"


def _valid_bytes(b: bytes) -> bool:
    try:
        return _validator.is_valid(json.loads(b))
    except (ValueError, RecursionError):
        return False


def bad_bodies():
    return st.one_of(mutated_payloads().map(encode), json_bodies(), damaged_bodies())


def clone(p: Any) -> Any:
    return copy.deepcopy(p)
