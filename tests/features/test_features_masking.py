"""What a page cannot tell is masked, never misread (issue 13):

- a NaN or +-Inf sample in one series of a multi-series counter masks the sums that include it
  for that step (summing the other series read as a counter reset, then as a burst:
  201 -> 7 -> 50,601 req/s), and the steps after read the true rate again;
- the `proxy` plugin of CoreDNS <= 1.4 has no `rcode` label, so its requests cannot be split
  into errors: upstream_error_share is masked, not 100%. Its other upstream features are read.

The old-release pages are written from the plugins' metric definitions (CoreDNS 1.4
plugin/proxy/metric.go: `coredns_proxy_request_count_total` and the histogram
`coredns_proxy_request_duration_seconds`, labels server, proto, proxy_proto, family, to; the
pre-1.7 names of coredns/dns; no coredns_plugin_enabled before 1.9), with the values of a
real recorded 1.15 page (bench/pages) renamed into them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from coredns_anomaly.exporter import features as F
from coredns_anomaly.exporter.features import FEATURE_NAMES, NEEDED_NAMES, FeatureState, aggregate
from coredns_anomaly.exporter.page import parse_needed, parse_page

IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}
SERVER = 'server="dns://:53",zone="."'


def requests_page(a: float, b: float | str, start: float = 1000.0) -> str:
    """Two series of one counter (UDP and TCP queries) and the process start time."""
    return (
        f'coredns_dns_requests_total{{{SERVER},proto="udp",family="1",type="A"}} {a}\n'
        f'coredns_dns_requests_total{{{SERVER},proto="tcp",family="1",type="A"}} {b}\n'
        f"process_start_time_seconds {start}\n"
    )


def rates(texts: list[str], dt: float = 2.0) -> list[float]:
    fs = FeatureState()
    rows = [fs.update(parse_needed(t, NEEDED_NAMES), k * dt) for k, t in enumerate(texts)]
    return [float(np.expm1(r[IDX["dns_requests_rate"]])) for r in rows[1:]]


@pytest.mark.parametrize("poison", ["NaN", "+Inf", "-Inf"])
def test_a_non_finite_series_masks_the_sum_and_reads_no_reset_or_burst(poison):
    # 200 UDP + 1 TCP queries per second; the UDP series reads NaN on one scrape
    udp, tcp = [10_000 + 400 * k for k in range(6)], [100 + 2 * k for k in range(6)]
    texts = [requests_page(u, t) for u, t in zip(udp, tcp, strict=True)]
    texts[2] = requests_page(poison, tcp[2])
    got = rates(texts)
    assert got[0] == pytest.approx(201.0)
    assert math.isnan(got[1]), "the poisoned step is masked, not read as a reset"
    assert math.isnan(got[2]), "the step after has no previous sum to subtract from"
    assert got[3:] == pytest.approx([201.0, 201.0]), "then the true rate, no burst"
    # what it used to read: the sum without the NaN series went down (a reset), then up (a burst)
    fs, old = FeatureState(), []
    for k, t in enumerate(texts):
        page = parse_needed(t, NEEDED_NAMES)
        page.nonfinite.clear()  # as if NaN samples were simply dropped
        old.append(float(np.expm1(fs.update(page, 2.0 * k)[IDX["dns_requests_rate"]])))
    assert old[2] < 100 and old[3] > 5_000, old


def test_a_nan_masks_only_the_sums_it_is_part_of():
    def text(a: object, b: object, c: object) -> str:
        return (
            f'coredns_dns_responses_total{{{SERVER},rcode="NOERROR",plugin=""}} {a}\n'
            f'coredns_dns_responses_total{{{SERVER},rcode="NXDOMAIN",plugin=""}} {b}\n'
            f'coredns_dns_request_duration_seconds_bucket{{{SERVER},le="0.1"}} {a}\n'
            f'coredns_dns_request_duration_seconds_bucket{{{SERVER},le="+Inf"}} {c}\n'
        )

    values = aggregate(parse_page(text(100, "NaN", 150)))
    assert values["resp"] is None and values["resp_nxdomain"] is None
    assert values["resp_noerror"] == 100.0, "the NOERROR series is whole"
    assert values["dur"] == {0.1: 100.0, math.inf: 150.0}
    assert aggregate(parse_page(text(100, 5, "+Inf")))["dur"] is None, "an Inf bucket"


def test_a_family_of_only_nan_is_missing_not_a_lazy_zero():
    """The cache plugin is enabled, so an absent evictions counter counts as 0; one that is
    present but NaN is unknown."""
    text = (
        f'coredns_plugin_enabled{{{SERVER},name="cache"}} 1\n'
        f'coredns_cache_evictions_total{{{SERVER},type="success"}} NaN\n'
    )
    assert aggregate(parse_page(text))["cache_evictions"] is None
    absent = f'coredns_plugin_enabled{{{SERVER},name="cache"}} 1\n'
    assert aggregate(parse_page(absent))["cache_evictions"] == 0.0


def test_sums_that_overflow_are_missing():
    text = 'go_goroutines{a="1"} 1e308\ngo_goroutines{a="2"} 1e308\n'
    assert aggregate(parse_page(text))["goroutines"] is None


def _proxy_1_4(req: float, servfail: float) -> list[str]:
    """CoreDNS 1.4 with the `proxy` plugin: upstream requests by protocol, no rcode."""
    labels = 'server="dns://:53",proto="udp",proxy_proto="dns",family="1",to="10.0.0.2:53"'
    lines = [
        f"coredns_proxy_request_count_total{{{labels}}} {req}",
        f'coredns_proxy_request_duration_seconds_bucket{{{labels},le="0.001"}} {req * 0.5}',
        f'coredns_proxy_request_duration_seconds_bucket{{{labels},le="0.1"}} {req * 0.99}',
        f'coredns_proxy_request_duration_seconds_bucket{{{labels},le="+Inf"}} {req}',
        f"coredns_proxy_request_duration_seconds_sum{{{labels}}} {req * 0.004}",
        f"coredns_proxy_request_duration_seconds_count{{{labels}}} {req}",
    ]
    return lines


def _forward_1_6(req: float, servfail: float) -> list[str]:
    """CoreDNS 1.5/1.6 `forward` (names before 1.7): rcodes per upstream. The request counter
    was renamed in 1.7 and is not read (upstream_requests_rate is masked on these releases)."""
    to = 'to="10.0.0.2:53"'
    return [
        f"coredns_forward_request_count_total{{{to}}} {req}",
        f'coredns_forward_response_rcode_count_total{{rcode="NOERROR",{to}}} {req - servfail}',
        f'coredns_forward_response_rcode_count_total{{rcode="SERVFAIL",{to}}} {servfail}',
    ]


def _forward_1_8(req: float, servfail: float) -> list[str]:
    """CoreDNS 1.7-1.10 `forward`."""
    to = 'to="10.0.0.2:53"'
    return [
        f"coredns_forward_requests_total{{{to}}} {req}",
        f'coredns_forward_responses_total{{rcode="NOERROR",{to}}} {req - servfail}',
        f'coredns_forward_responses_total{{rcode="SERVFAIL",{to}}} {servfail}',
        f'coredns_forward_request_duration_seconds_bucket{{rcode="NOERROR",{to},le="0.1"}} {req}',
        f'coredns_forward_request_duration_seconds_bucket{{rcode="NOERROR",{to},le="+Inf"}} {req}',
        f'coredns_plugin_enabled{{{SERVER},name="forward"}} 1',
    ]


def _proxy_1_11(req: float, servfail: float) -> list[str]:
    """CoreDNS 1.11+: the shared proxy package, with proxy_name and rcode."""
    lb = 'proxy_name="forward",to="10.0.0.2:53"'
    return [
        f'coredns_proxy_request_duration_seconds_count{{{lb},rcode="NOERROR"}} {req - servfail}',
        f'coredns_proxy_request_duration_seconds_count{{{lb},rcode="SERVFAIL"}} {servfail}',
        f'coredns_proxy_request_duration_seconds_bucket{{{lb},rcode="NOERROR",le="0.1"}} {req}',
        f'coredns_proxy_request_duration_seconds_bucket{{{lb},rcode="NOERROR",le="+Inf"}} {req}',
        f'coredns_plugin_enabled{{{SERVER},name="forward"}} 1',
    ]


RELEASES = {"1.4 proxy": _proxy_1_4, "1.6 forward": _forward_1_6, "1.8 forward": _forward_1_8, "1.11+ proxy": _proxy_1_11}  # fmt: skip
# (upstream_requests_rate, upstream_error_share) after 200 upstream queries, 10 SERVFAIL, in 2 s
EXPECTED = {
    "1.4 proxy": (100.0, None),  # no rcode: the error share is unknown, not 1.0
    "1.6 forward": (100.0, 0.05),  # pre-1.7 names (`*_count_total`) are read too
    "1.8 forward": (100.0, 0.05),
    "1.11+ proxy": (100.0, 0.05),
}


@pytest.mark.parametrize("release", list(RELEASES))
def test_upstream_features_of_each_release(release):
    make = RELEASES[release]

    def page(k: int) -> str:
        dns = f'coredns_dns_requests_total{{{SERVER},proto="udp",family="1",type="A"}} {1000 * (k + 1)}'  # fmt: skip
        return "\n".join([dns, *make(400.0 + 200 * k, 20.0 + 10 * k)]) + "\n"

    fs = FeatureState()
    fs.update(parse_needed(page(0), NEEDED_NAMES), 0.0)
    row = fs.update(parse_needed(page(1), NEEDED_NAMES), 2.0)
    rate, share = row[IDX["upstream_requests_rate"]], row[IDX["upstream_error_share"]]
    want_rate, want_share = EXPECTED[release]
    if want_rate is None:
        assert math.isnan(rate)
    else:
        assert np.expm1(rate) == pytest.approx(want_rate)
    if want_share is None:
        assert math.isnan(share), f"{release}: upstream_error_share {share}, should be masked"
    else:
        assert share == pytest.approx(want_share)
    if release == "1.4 proxy":
        assert 10 ** row[IDX["upstream_latency_p50"]] == pytest.approx(0.001, rel=0.01)


def test_the_engine_reports_the_old_proxy_error_share_as_missing():
    """Through the exporter's own step: the feature shows in coredns_anomaly_feature_missing."""
    from coredns_anomaly.exporter.bundle import load_bundle
    from coredns_anomaly.exporter.engine import Engine, Observation

    eng = Engine(load_bundle(Path(__file__).resolve().parents[2] / "models" / "default"))

    def page(k: int) -> str:
        dns = f'coredns_dns_requests_total{{{SERVER},proto="udp",family="1",type="A"}} {1000 * (k + 1)}'  # fmt: skip
        return "\n".join([dns, *_proxy_1_4(400.0 + 200 * k, 0)]) + "\n"

    for k in range(3):
        eng.step([Observation("old", 1000.0 + 2 * k, text=page(k))])
    st = eng.states["old"]
    assert st.up
    assert "upstream_error_share" in st.missing_features
    assert "upstream_requests_rate" not in st.missing_features


def test_the_aggregate_table_names_no_label_it_cannot_read():
    """Every needs_label aggregate splits by that label (else the mask would be pointless)."""
    for ag in F.AGGREGATES:
        if ag.needs_label:
            assert ag.needs_label in ag.where_text, ag


def test_estimated_features_read_back_around_a_masked_step_not_through_it():
    """Shares read back over several steps on a quiet server (Evidence); a step whose sum was
    masked ends the look-back, so no share is ever computed across the unknown value."""

    def page(k: int, nx: float | str) -> str:
        return (
            f'coredns_dns_responses_total{{{SERVER},rcode="NOERROR",plugin=""}} {30 * k}\n'
            f'coredns_dns_responses_total{{{SERVER},rcode="NXDOMAIN",plugin=""}} {nx}\n'
            "process_start_time_seconds 1000\n"
        )

    fs = FeatureState()
    shares = []
    for k in range(12):  # 40 responses per step, a quarter NXDOMAIN: 3 steps hold 100 events
        text = page(k, "NaN" if k == 5 else 10 * k)
        shares.append(fs.update(parse_needed(text, NEEDED_NAMES), 2.0 * k)[IDX["dns_rcode_nxdomain_share"]])  # fmt: skip
    assert math.isnan(shares[5]) and math.isnan(shares[6])
    finite = [s for s in shares[1:] if not math.isnan(s)]
    assert finite == pytest.approx([0.25] * len(finite)) and len(finite) == 9
