"""Estimated features (shares, quantiles, means) read back until they hold enough events.

On a quiet CoreDNS a 2 s step holds a handful of upstream queries, and a p99 of five queries is
their maximum: one slow answer moves it tenfold. features.Evidence makes these features read as
many steps back as hold `min_events` events (never across a restart, at most
`max_lookback_seconds`), while a busy server still reads one step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from coredns_anomaly.exporter import features as F
from coredns_anomaly.exporter.page import parse_page

IDX = {n: i for i, n in enumerate(F.FEATURE_NAMES)}


def page(n: float, slow: float, start: float = 1000.0) -> str:
    """A page after `n` queries in all, `slow` of them slower than 0.1 s; every query went
    upstream, every one answered NOERROR."""
    lines = [
        f'coredns_dns_requests_total{{type="A"}} {n}',
        f'coredns_dns_responses_total{{rcode="NOERROR"}} {n}',
        'coredns_plugin_enabled{name="forward"} 1',
        f'coredns_proxy_request_duration_seconds_count{{proxy_name="forward",rcode="NOERROR"}} {n}',
        f'coredns_proxy_request_duration_seconds_bucket{{proxy_name="forward",le="0.01"}} {n - slow}',
        f'coredns_proxy_request_duration_seconds_bucket{{proxy_name="forward",le="1"}} {n}',
        f'coredns_proxy_request_duration_seconds_bucket{{proxy_name="forward",le="+Inf"}} {n}',
        f"process_start_time_seconds {start}",
    ]
    return "\n".join(lines) + "\n"


def rows(pages: list[str], evidence: F.Evidence, step: float = 2.0) -> np.ndarray:
    st = F.FeatureState(evidence)
    return np.array([st.update(parse_page(p), i * step) for i, p in enumerate(pages)])


def quiet_pages(steps: int, per_step: float, slow_at: int) -> list[str]:
    """`per_step` queries a step; one slow query in the step ending at index slow_at."""
    return [page(per_step * i, 1.0 if i >= slow_at else 0.0) for i in range(steps)]


def test_a_quiet_servers_p99_is_not_the_max_of_one_steps_few_queries():
    pages = quiet_pages(40, per_step=5, slow_at=30)
    one = rows(pages, F.ONE_STEP)[:, IDX["upstream_latency_p99"]]
    enough = rows(pages, F.Evidence(100, 60))[:, IDX["upstream_latency_p99"]]
    # one step: 1 slow query in 5 makes the p99 jump to the slow bucket (0.01 s -> ~1 s)
    assert one[30] - one[29] > 1.0
    # 100 events (20 steps of 5): 1 slow in 100 is the 1% tail, the p99 moves less than a decade
    assert enough[30] - enough[29] < 1.0
    # the rate is always one step
    np.testing.assert_allclose(
        rows(pages, F.ONE_STEP)[1:, IDX["dns_requests_rate"]],
        rows(pages, F.Evidence(100, 60))[1:, IDX["dns_requests_rate"]],
    )


def test_a_busy_server_reads_one_step():
    pages = [page(500 * i, 0.0) for i in range(6)]
    a, b = rows(pages, F.ONE_STEP), rows(pages, F.Evidence(100, 60))
    np.testing.assert_allclose(a[1:], b[1:], equal_nan=True)


def test_lookback_stops_at_max_seconds_and_at_a_restart():
    st = F.FeatureState(F.Evidence(1000, 10))
    for i in range(30):  # 5 queries a step: 1000 events never come within 10 s
        st.update(parse_page(page(5 * i, 0.0)), 2.0 * i)
    assert 2.0 * 29 - st.history[0][0] <= 10.0  # older steps were dropped
    assert st._lookback(("up_req",), st.history[-1][1], list(st.history)[:-1]) == 5
    # a restart: the counters start over; the lookback never reaches the old process
    st2 = F.FeatureState(F.Evidence(1000, 60))
    for i in range(5):
        st2.update(parse_page(page(5 * i, 0.0, start=1000.0)), 2.0 * i)
    row = st2.update(parse_page(page(3, 0.0, start=2000.0)), 10.0)
    assert row[IDX["upstream_share"]] == pytest.approx(1.0)
    hist = list(st2.history)
    assert st2._lookback(("req",), hist[-1][1], hist[:-1]) == 1


def test_evidence_round_trips_and_rejects_nonsense():
    assert F.Evidence.from_dict(F.EVIDENCE.to_dict()) == F.EVIDENCE
    for bad in ({"min_events": -1, "max_lookback_seconds": 60}, {"min_events": 1}, [1], {"min_events": "x", "max_lookback_seconds": 1}, {"min_events": math.inf, "max_lookback_seconds": 1}):  # fmt: skip
        with pytest.raises(ValueError):
            F.Evidence.from_dict(bad)
