"""Weak-label matchers: Prometheus' matcher syntax, anchored regexes, clear errors, linear time."""

from __future__ import annotations

import time

import pytest

from coredns_anomaly.webhook.matchers import (
    DEFAULT_WEAK_MATCHERS,
    MatcherError,
    match_all,
    parse_matchers,
)


def test_the_default_selects_the_coredns_mixin_alerts_not_watchdog():
    ms = parse_matchers(DEFAULT_WEAK_MATCHERS)
    assert match_all(ms, {"alertname": "CoreDNSErrorsHigh"})
    assert not match_all(ms, {"alertname": "Watchdog"})
    assert not match_all(ms, {"alertname": "KubeCoreDNSDown"})  # anchored, as in Prometheus


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('job="coredns"', {"job": "coredns"}, True),
        ('job!="coredns"', {"job": "coredns"}, False),
        ('severity!~"info|none"', {"severity": "warning"}, True),
        ('severity=~"info|none"', {}, False),  # a missing label is ""
        ('team=""', {}, True),
        ('{alertname=~"CoreDNS.*", severity="critical"}', {"alertname": "CoreDNSDown"}, False),
        ('name="a \\"quoted\\" value"', {"name": 'a "quoted" value'}, True),
        ("", {"alertname": "Anything"}, True),
    ],
)
def test_matchers_read_as_prometheus_does(text, labels, expected):
    assert match_all(parse_matchers(text), labels) is expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("alertname", "cannot read the matcher"),
        ("alertname=CoreDNS", "cannot read the matcher"),
        ('a="x" b="y"', "expected ','"),
        ('a=~"(unclosed"', "bad regex"),
    ],
)
def test_a_bad_matcher_says_what_to_write(text, says):
    with pytest.raises(MatcherError, match=says):
        parse_matchers(text)


def test_parsing_stays_linear_in_the_input():
    """A long hostile setting parses (or fails) in time proportional to its length."""
    for n in (1_000, 10_000):
        good = ",".join(f'l{i}="{"v" * 5}"' for i in range(n))
        bad = 'a="' + "\\" * (20 * n)  # an unterminated escape run
        t0 = time.perf_counter()
        assert len(parse_matchers(good)) == n
        with pytest.raises(MatcherError):
            parse_matchers(bad)
        per_char = (time.perf_counter() - t0) / (len(good) + len(bad))
        assert per_char < 20e-6, f"{per_char * 1e6:.1f} us per character at n={n}"
