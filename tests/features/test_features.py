"""Feature code: rates, resets, masking, old and new metric names, quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coredns_anomaly.exporter import features as F
from coredns_anomaly.exporter.page import PageError, parse_page

IDX = {n: i for i, n in enumerate(F.FEATURE_NAMES)}


def page_text(
    req: float,
    nx: float,
    start: float = 1000.0,
    cache: bool = True,
    forward: str = "proxy",
    buckets: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> str:
    """A small CoreDNS-like page; `buckets` are cumulative counts for le=0.001, 0.1, +Inf."""
    lines = [
        f'coredns_dns_requests_total{{server="dns://:53",zone=".",proto="udp",family="1",type="A"}} {req}',
        f'coredns_dns_responses_total{{server="dns://:53",zone=".",rcode="NOERROR",plugin=""}} {req - nx}',
        f'coredns_dns_responses_total{{server="dns://:53",zone=".",rcode="NXDOMAIN",plugin=""}} {nx}',
        f'coredns_dns_request_duration_seconds_bucket{{server="dns://:53",zone=".",le="0.001"}} {buckets[0]}',
        f'coredns_dns_request_duration_seconds_bucket{{server="dns://:53",zone=".",le="0.1"}} {buckets[1]}',
        f'coredns_dns_request_duration_seconds_bucket{{server="dns://:53",zone=".",le="+Inf"}} {buckets[2]}',
        f"process_start_time_seconds {start}",
        f"process_cpu_seconds_total {req / 1000}",
        'coredns_plugin_enabled{server="dns://:53",zone=".",name="forward"} 1',
    ]
    if cache:
        lines += [
            'coredns_plugin_enabled{server="dns://:53",zone=".",name="cache"} 1',
            f'coredns_cache_hits_total{{server="dns://:53",type="success",zones=".",view=""}} {req * 0.9}',
            f'coredns_cache_misses_total{{server="dns://:53",zones=".",view=""}} {req * 0.1}',
        ]
    if forward == "proxy":  # CoreDNS 1.11+
        lines.append(
            f'coredns_proxy_request_duration_seconds_count{{proxy_name="forward",to="1.1.1.1:53",rcode="NOERROR"}} {req * 0.1}'
        )
    elif forward == "forward":  # before 1.11
        lines.append(f'coredns_forward_requests_total{{to="1.1.1.1:53"}} {req * 0.1}')
    return "\n".join(lines) + "\n"


def run(pages: list[tuple[str, float]]) -> np.ndarray:
    st = F.FeatureState()
    return np.array([st.update(parse_page(text), ts) for text, ts in pages])


def test_first_step_is_masked_then_rates_come_from_one_step_deltas():
    rows = run([(page_text(100, 50), 0.0), (page_text(300, 150), 2.0)])
    assert np.isnan(rows[0]).all()
    assert rows[1, IDX["dns_requests_rate"]] == pytest.approx(math.log1p(100.0))
    assert rows[1, IDX["dns_rcode_nxdomain_share"]] == pytest.approx(0.5)
    assert rows[1, IDX["cache_hit_ratio"]] == pytest.approx(0.9)
    assert rows[1, IDX["upstream_share"]] == pytest.approx(0.1)


def test_counter_reset_by_restart_gives_no_negative_rate():
    pages = [
        (page_text(10_000, 5_000, start=1000), 0.0),
        (page_text(10_200, 5_100, start=1000), 2.0),
        (page_text(150, 75, start=1003), 4.0),  # restarted: counters start again from 0
        (page_text(350, 175, start=1003), 6.0),
    ]
    rows = run(pages)
    rate = np.expm1(rows[1:, IDX["dns_requests_rate"]])
    assert rate.tolist() == pytest.approx([100.0, 75.0, 100.0])
    assert rows[1:, IDX["dns_rcode_nxdomain_share"]] == pytest.approx(0.5)


def test_reset_without_start_time_is_detected_by_a_falling_counter():
    a = page_text(5000, 100).replace("process_start_time_seconds 1000.0\n", "")
    b = page_text(40, 20).replace("process_start_time_seconds 1000.0\n", "")
    rows = run([(a, 0.0), (b, 2.0)])
    assert np.expm1(rows[1, IDX["dns_requests_rate"]]) == pytest.approx(20.0)


def test_missing_steps_stretch_the_rate_window():
    rows = run([(page_text(100, 0), 0.0), (page_text(700, 0), 6.0)])  # two scrapes lost
    assert np.expm1(rows[1, IDX["dns_requests_rate"]]) == pytest.approx(100.0)


def test_absent_plugin_masks_its_features_but_not_others():
    rows = run([(page_text(100, 10, cache=False), 0.0), (page_text(200, 20, cache=False), 2.0)])
    assert np.isnan(rows[1, IDX["cache_hit_ratio"]])
    assert np.isnan(rows[1, IDX["cache_entries"]])
    assert not np.isnan(rows[1, IDX["dns_requests_rate"]])


def test_lazy_counter_of_an_enabled_plugin_counts_as_zero():
    rows = run([(page_text(100, 10), 0.0), (page_text(200, 20), 2.0)])
    assert rows[1, IDX["cache_evictions_rate"]] == 0.0  # no eviction yet: not missing


@pytest.mark.parametrize("forward", ["proxy", "forward"])
def test_upstream_features_from_current_and_pre_1_11_names(forward):
    rows = run(
        [(page_text(100, 10, forward=forward), 0.0), (page_text(300, 20, forward=forward), 2.0)]
    )
    assert np.expm1(rows[1, IDX["upstream_requests_rate"]]) == pytest.approx(10.0)


def test_nan_and_inf_samples_mask_only_what_they_feed():
    good = page_text(100, 10)
    bad = page_text(300, 20).replace(
        "process_cpu_seconds_total 0.3", "process_cpu_seconds_total NaN"
    )
    bad = bad.replace('rcode="NXDOMAIN",plugin=""} 20', 'rcode="NXDOMAIN",plugin=""} +Inf')
    rows = run([(good, 0.0), (bad, 2.0)])
    assert np.isnan(rows[1, IDX["process_cpu_cores"]])
    assert not np.isnan(rows[1, IDX["dns_requests_rate"]])


def test_latency_quantiles_follow_promql_histogram_quantile():
    assert F.histogram_quantile(0.5, {0.1: 50.0, 0.2: 100.0, math.inf: 100.0}) == pytest.approx(0.1)
    assert F.histogram_quantile(0.75, {0.1: 50.0, 0.2: 100.0, math.inf: 100.0}) == pytest.approx(
        0.15
    )
    assert F.histogram_quantile(0.99, {0.1: 0.0, 0.2: 0.0, math.inf: 10.0}) == pytest.approx(0.2)
    assert math.isnan(F.histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}))
    rows = run(
        [
            (page_text(0, 0, buckets=(0, 0, 0)), 0.0),
            (page_text(100, 0, buckets=(90, 100, 100)), 2.0),  # all within 100 ms
        ]
    )
    assert 10 ** rows[1, IDX["dns_latency_p99"]] == pytest.approx(0.001 + 0.099 * 0.9)


def test_garbage_pages_raise_page_error_only():
    for text in ["this is { not metrics", 'x{a="1"} notanumber', "<html>502</html>"]:
        with pytest.raises(PageError):
            parse_page(text)


def test_feature_table_lists_every_feature_and_both_naming_generations():
    table = F.feature_table_markdown()
    for name in F.FEATURE_NAMES:
        assert f"`{name}`" in table
    assert "coredns_proxy_request_duration_seconds_count" in table
    assert "coredns_forward_requests_total" in table
