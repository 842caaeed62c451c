"""A real lab with a non-default plugin chain: no cache, autopath, rewrite, IPv4-only clients."""

from __future__ import annotations

import pytest

from coredns_anomaly.lab import faults, traffic
from coredns_anomaly.lab.lab import Lab, LabSettings


@pytest.mark.integration
def test_lab_without_cache_with_autopath_answers_and_its_metrics_move(tmp_path):
    settings = LabSettings(
        instances=1, step=1.0, seed=9, base_rates=(120.0,), workdir=tmp_path, cache=False,
        rewrite=True, autopath=True, mix=traffic.QueryMix(aaaa_share=0.0, other_share=0.05),
    )  # fmt: skip
    schedule = [
        faults.Item(0, "misconfig_refused", 8.0, 5.0, 0.9, True),  # a reload with this chain
        faults.Item(0, "end", 20.0, 0.0, 0.0, False),
    ]
    with Lab(settings) as lab:
        corefile = lab.instances[0].front.corefile_path.read_text()
        ds = lab.record(schedule)
    assert "autopath cluster.local" in corefile and "rewrite name" in corefile
    assert "    cache " not in corefile
    assert not ds.meta["failed_items"]
    assert "autopath" in ds.meta["front_plugins"] and "cache" not in ds.meta["front_plugins"]
    s = ds.samples
    names = set(s["name"])
    assert not any(n.startswith("coredns_cache_") for n in names)

    def moved(name: str, labels: str = "") -> float:
        rows = s[(s["name"] == name) & s["labels"].str.contains(labels, regex=False)]
        per_ts = rows.groupby("timestamp")["value"].sum().sort_index()
        if per_ts.empty:  # no such series at all: nothing moved
            return 0.0
        return float(per_ts.iloc[-1] - per_ts.iloc[0])

    assert moved("coredns_dns_requests_total") > 1000
    assert moved("coredns_dns_requests_total", 'type="AAAA"') == 0  # IPv4-only clients
    assert moved("coredns_dns_requests_total", 'type="TXT"') > 0
    assert moved("coredns_autopath_success_total") > 0  # server-side search for `default`
    assert moved("coredns_dns_responses_total", 'rcode="REFUSED"') > 0
    assert moved("lab_client_queries_total", 'outcome="NOERROR"') > 1000
