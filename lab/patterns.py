"""Recurring benign patterns written into a recording's own counters, for the feedback loop's
test and benchmark: the kind of thing a cluster does that the model never saw and an engineer
judges a false alarm.

The one pattern so far is a batch job: a client that sends `qps` SRV lookups per second for a
while, answered (NOERROR), on one instance. It is added to that instance's counters
(`coredns_dns_requests_total{type="SRV",proto="udp"}` and
`coredns_dns_responses_total{rcode="NOERROR"}`), so every derived feature (rates, the query-type
mix, the NOERROR share) moves as it would on a real CoreDNS answering such a job.
"""

from __future__ import annotations

import numpy as np

from coredns_anomaly.training import dataset as ds_mod


def batch_runs(
    ds: ds_mod.Dataset, minutes: tuple[float, ...], seconds: float
) -> list[tuple[float, float]]:
    """(start, end) wall times of runs starting `minutes` after the recording's first scrape."""
    t0 = float(ds.samples["timestamp"].min())
    return [(t0 + m * 60, t0 + m * 60 + seconds) for m in minutes]


def with_batch_job(
    ds: ds_mod.Dataset, instance: str, runs: list[tuple[float, float]], qps: float
) -> ds_mod.Dataset:
    """A copy of `ds` whose `instance` runs the batch job during `runs`.

    Raises ValueError when the instance has no series to add the job to (a recording without
    that instance, or a release without those counters): silently adding nothing would make
    the pattern invisible and the test meaningless.
    """
    s = ds.samples.copy()
    for c in ("name", "labels", "instance"):
        s[c] = s[c].astype(str)

    def done(ts: np.ndarray) -> np.ndarray:  # the job's queries so far: a counter
        return sum(qps * np.clip(ts - a, 0.0, b - a) for a, b in runs)

    mine = s["instance"] == instance
    srv = mine & (s["name"] == "coredns_dns_requests_total")
    srv &= s["labels"].str.contains('type="SRV"') & s["labels"].str.contains('proto="udp"')
    ok = mine & (s["name"] == "coredns_dns_responses_total")
    ok &= s["labels"].str.contains('rcode="NOERROR"')
    for name, m in (("SRV requests", srv), ("NOERROR responses", ok)):
        if not m.any():
            raise ValueError(f"{instance}: no {name} series to add the batch job to")
        s.loc[m, "value"] += done(s.loc[m, "timestamp"].to_numpy(float))
    return ds_mod.Dataset(s, ds.labels, dict(ds.meta))
