"""Label files become labels and sources of a dataset (retraining on them:
test_verdicts_silence_false_alarms.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.labels_merge import merge_label_files
from coredns_anomaly.training.series import NORMAL


def test_label_files_become_sources_and_labels(tmp_path):
    samples = pd.DataFrame(
        {
            "timestamp": [0.0, 10.0],
            "instance": ["a:9153"] * 2,
            "name": ["up"] * 2,
            "labels": [""] * 2,
            "value": [1.0, 1.0],
        }
    )
    ds = ds_mod.Dataset(samples, ds_mod.empty_labels(), {"step_seconds": 10.0})
    f = tmp_path / "labels.csv"
    f.write_text(
        "instance,start,end,verdict,class,source,alertname,fingerprint,comment\n"
        "a:9153,1970-01-01T00:00:00Z,1970-01-01T00:00:05Z,false_alarm,,verified,CoreDNSAnomaly,,deploy\n"
        "a:9153,1970-01-01T00:00:08Z,1970-01-01T00:00:20Z,anomaly,upstream_servfail,weak,CoreDNSErrorsHigh,,\n"
    )
    merged = merge_label_files(ds, [f])
    times = np.array([1.0, 19.0])  # scrapes measure (t - 10 s, t]
    assert merged.label_at("a:9153", times).tolist() == [NORMAL, "upstream_servfail"]
    assert ds_mod.label_sources_at(merged, "a:9153", times).tolist() == ["false_alarm", "weak"]
    only_verified = merge_label_files(ds, [f], include_weak=False)
    assert only_verified.label_at("a:9153", times).tolist() == [NORMAL, NORMAL]
