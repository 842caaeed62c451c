"""The real lab: CoreDNS moves as each fault should, and a restart is a handled reset."""

from __future__ import annotations

import subprocess

import numpy as np

from coredns_anomaly.exporter.features import FEATURE_NAMES
from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.featurize import featurize
from coredns_anomaly.training.openmetrics import write_openmetrics

from .conftest import require

IDX = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _during(f, ds, cls):
    row = ds.labels[ds.labels["class"] == cls].iloc[0]
    inside = (f.times >= row.start + 2) & (f.times < row.end)
    before = (f.times >= 4 + f.times[0]) & (f.times < row.start)
    return inside, before


def test_labels_record_every_episode_with_params(lab_recording):
    ds = lab_recording
    assert ds.labels["class"].tolist() == ["upstream_latency", "random_subdomain", "restart"]
    assert ds.labels["anomaly"].tolist() == [True, True, False]
    assert "delay_ms" in ds.labels["params"].iloc[0]
    assert ds.meta["coredns_version"].startswith("1.")


def test_upstream_latency_raises_upstream_and_client_p99(lab_recording):
    f = featurize(lab_recording)[0]
    inside, before = _during(f, lab_recording, "upstream_latency")
    up99 = f.X[:, IDX["upstream_latency_p99"]]
    assert np.nanmedian(up99[inside]) > np.nanmedian(up99[before]) + 1.0  # >10x in log10 seconds
    # Clients only feel it on cache misses, so per-step p99 rises in the episode's worst steps
    # and the mean (dragged by the slow misses) rises throughout.
    p99 = f.X[:, IDX["dns_latency_p99"]]
    assert np.nanmax(p99[inside]) > np.nanmax(p99[before]) + 0.5
    mean = f.X[:, IDX["dns_latency_mean"]]
    assert np.nanmedian(mean[inside]) > np.nanmedian(mean[before]) + 0.3


def test_random_subdomain_attack_raises_nxdomain_share_and_upstream_rate(lab_recording):
    f = featurize(lab_recording)[0]
    inside, before = _during(f, lab_recording, "random_subdomain")
    nx = f.X[:, IDX["dns_rcode_nxdomain_share"]]
    assert np.nanmedian(nx[inside]) > np.nanmedian(nx[before]) + 0.1
    up = f.X[:, IDX["upstream_requests_rate"]]
    assert np.nanmedian(up[inside]) > np.nanmedian(up[before]) + 1.0


def test_restart_leaves_a_counter_reset_that_features_absorb(lab_recording):
    ds = lab_recording
    req = ds.samples[ds.samples["name"] == "coredns_dns_requests_total"]
    total = req.groupby("timestamp")["value"].sum().sort_index()
    assert (np.diff(total.to_numpy()) < 0).any(), "the restart should reset the request counter"
    f = featurize(ds)[0]
    t_restart = ds.labels[ds.labels["class"] == "restart"].iloc[0].start
    after = f.times > t_restart
    rate = np.expm1(f.X[after, IDX["dns_requests_rate"]])
    rate = rate[np.isfinite(rate)]
    assert len(rate) > 5 and (rate >= 0).all() and rate.max() < 5 * np.median(rate)
    assert f.labels[after].tolist() == ["normal"] * int(after.sum())


def test_dataset_round_trips_and_exports_to_promtool_blocks(lab_recording, tmp_path):
    ds_mod.write(lab_recording, tmp_path / "ds")
    back = ds_mod.load(tmp_path / "ds")
    assert len(back.samples) == len(lab_recording.samples)
    n = write_openmetrics(back, tmp_path / "lab.om")
    promtool = require("promtool")
    out = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "lab.om"), str(tmp_path / "tsdb")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    written = sum(int(line.split()[4]) for line in out.stdout.splitlines()[1:] if line.strip())
    assert written == n == int(np.isfinite(back.samples["value"]).sum())
