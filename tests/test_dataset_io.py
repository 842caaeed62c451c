"""Dataset files: round trip, pandas-readable, and clear errors for bad directories."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from coredns_anomaly.training import dataset as ds_mod


def make_dataset(n_steps: int = 5) -> ds_mod.Dataset:
    rows = []
    for inst in ("coredns-0", "coredns-1"):
        for k in range(n_steps):
            t = 1_700_000_000.0 + 2 * k
            rows.append((t, inst, "coredns_dns_requests_total", 'proto="udp",type="A"', 10.0 * k))
            rows.append(
                (t, inst, "coredns_dns_request_duration_seconds_bucket", 'le="+Inf"', 5.0 * k)
            )
            rows.append((t, inst, "up", "", 1.0))
    samples = pd.DataFrame(rows, columns=list(ds_mod.SAMPLE_COLUMNS))
    labels = pd.DataFrame(
        [
            (
                "coredns-0",
                "upstream_latency",
                1_700_000_002.0,
                1_700_000_006.0,
                0.5,
                True,
                '{"delay_ms": 270}',
                "lab",
            ),
            ("coredns-1", "restart", 1_700_000_004.0, 1_700_000_005.0, 0.0, False, "{}", "lab"),
        ],
        columns=list(ds_mod.LABEL_COLUMNS),
    )
    return ds_mod.Dataset(
        samples, labels, {"step_seconds": 2.0, "seed": 1, "coredns_version": "1.15.0"}
    )


def test_round_trip_keeps_every_sample_label_and_card_field(tmp_path):
    ds = make_dataset()
    ds_mod.write(ds, tmp_path / "d")
    back = ds_mod.load(tmp_path / "d")
    key = ["instance", "name", "labels", "timestamp"]
    a = ds.samples.sort_values(key).reset_index(drop=True)
    b = back.samples.sort_values(key).reset_index(drop=True)
    for c in ds_mod.SAMPLE_COLUMNS:
        assert a[c].astype(str).tolist() == b[c].astype(str).tolist()
    assert back.labels["class"].tolist() == ["upstream_latency", "restart"]
    assert back.labels["anomaly"].tolist() == [True, False]
    assert back.meta["seed"] == 1 and back.meta["format_version"] == ds_mod.FORMAT_VERSION
    # plain pandas reads it too
    assert len(pd.read_parquet(tmp_path / "d" / "samples.parquet")) == len(ds.samples)
    assert list(pd.read_csv(tmp_path / "d" / "labels.csv").columns) == list(ds_mod.LABEL_COLUMNS)


def test_label_at_marks_only_anomalous_episodes():
    ds = make_dataset()
    times = 1_700_000_000.0 + np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    # the episode is [2, 6) and scrapes come every 2 s: the scrape at 6 measured (4, 6], all of
    # it inside the episode, so it carries the episode's class; the one at 8 does not
    assert ds.label_at("coredns-0", times).tolist() == [
        "normal",
        "upstream_latency",
        "upstream_latency",
        "upstream_latency",
        "normal",
    ]
    assert ds.label_at("coredns-1", times).tolist() == ["normal"] * 5  # a restart is normal


def test_labels_text_round_trips_with_escapes():
    lb = {"zone": ".", "q": 'say "hi"\\now', "le": "+Inf"}
    assert ds_mod.parse_labels(ds_mod.format_labels(lb)) == lb
    assert ds_mod.parse_labels("") == {}


def test_summary_counts_episodes_and_normal_time():
    s = ds_mod.summary(make_dataset())
    assert s["episodes_per_class"] == {"upstream_latency": 1}
    assert s["benign_events"] == {"restart": 1}
    assert s["instances"] == 2


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda d: (d / "meta.json").unlink(), "missing meta.json"),
        (lambda d: (d / "meta.json").write_text("{nope"), "not valid JSON"),
        (lambda d: (d / "meta.json").write_text("[]"), "must be an object with step_seconds"),
        (
            lambda d: (d / "meta.json").write_text(
                json.dumps({"step_seconds": 2, "format_version": 99})
            ),
            "newer than this reader",
        ),
        (lambda d: (d / "samples.parquet").write_bytes(b"not parquet"), "unreadable parquet"),
        (lambda d: (d / "labels.csv").write_text("instance,class\nx,y\n"), "missing columns"),
        (
            lambda d: (d / "labels.csv").write_text(
                "instance,class,start,end,intensity,anomaly,params,source\nc,x,5,4,0.1,True,{},lab\n"
            ),
            "end <= start",
        ),
    ],
)
def test_bad_dataset_directories_give_clear_errors(tmp_path, breakage, message):
    d = ds_mod.write(make_dataset(), tmp_path / "d")
    breakage(d)
    with pytest.raises(ds_mod.DatasetError, match=message):
        ds_mod.load(d)


def test_not_a_directory(tmp_path):
    with pytest.raises(ds_mod.DatasetError, match="not a dataset directory"):
        ds_mod.load(tmp_path / "nothing")


def test_rewrite_replaces_a_previous_dataset(tmp_path):
    d = tmp_path / "d"
    ds_mod.write(make_dataset(3), d)
    ds_mod.write(make_dataset(6), d)
    assert len(ds_mod.load(d).samples) == 2 * 3 * 6
    assert not (tmp_path / "d.tmp").exists()


def test_resample_keeps_every_kth_scrape_and_the_counters_as_they_were():
    """A 2 s dataset as a Prometheus scraping every 6 s would hold it (counters cumulative)."""
    ds = make_dataset(n_steps=10)
    r = ds_mod.resample(ds, 3)
    assert r.step == 3 * ds.step and r.meta["resampled_from"] == {"step_seconds": 2.0, "every": 3}
    for inst in ds.instances:
        t = np.sort(r.samples[r.samples["instance"] == inst]["timestamp"].unique())
        np.testing.assert_allclose(np.diff(t), 6.0)
    sel = (r.samples["name"] == "coredns_dns_requests_total") & (
        r.samples["instance"] == "coredns-0"
    )
    assert r.samples[sel].sort_values("timestamp")["value"].tolist() == [0.0, 30.0, 60.0, 90.0]
    assert r.labels.equals(ds.labels)
    with pytest.raises(ValueError):
        ds_mod.resample(ds, 0)


def test_resample_to_a_step_keeps_the_first_scrape_of_every_interval():
    """2 s scrapes as a 15 s Prometheus holds them: gaps of 14 or 16 s, 15 s on average."""
    ds = make_dataset(n_steps=61)  # 120 s at 2 s
    r = ds_mod.resample_to(ds, 15.0)
    assert r.step == 15.0 and r.meta["resampled_from"]["to_step_seconds"] == 15.0
    for inst in ds.instances:
        t = np.sort(r.samples[r.samples["instance"] == inst]["timestamp"].unique())
        gaps = np.diff(t)
        assert set(np.round(gaps).tolist()) <= {14.0, 16.0}
        assert abs(gaps.mean() - 15.0) <= 1.0 and len(t) == 9  # 0, 16, 30, 46, 60, ... 120
    assert r.labels.equals(ds.labels)
    with pytest.raises(ValueError):
        ds_mod.resample_to(ds, 1.0)  # faster than the recording
