"""The feedback loop's hand-over: verdicts and marked ranges on the webhook's page, exported by
`GET /labels`, read by training as the label sources `train --labels` learns from."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import numpy as np
import pandas as pd
from webhook_testlib import BASIC, alert, payload

from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.labels_merge import merge_label_files

T0 = datetime(2026, 11, 22, 1, 0, tzinfo=timezone.utc).timestamp()


def test_verdicts_and_marks_reach_training_as_labels(client, post, tmp_path):
    # a false alarm judged on the alerts page, a missed anomaly marked on the chart
    post(payload(alert("fa", instance="dns-a:53", status="resolved",
                       starts_at="2026-11-22T01:00:00Z", ends_at="2026-11-22T01:02:00Z")))  # fmt: skip
    html = client.get("/alerts?since=all", headers=BASIC).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    r = client.post(
        "/alerts/verdict",
        data={"csrf_token": token, "fingerprint": "fa", "starts_at": "2026-11-22T01:00:00.000000Z",
              "verdict": "false_alarm"},
        headers=BASIC,
    )  # fmt: skip
    assert r.status_code == 303
    r = client.post(
        "/instances/mark",
        data={"csrf_token": token, "instance": "dns-a:53", "start": "2026-11-22T01:05:00Z",
              "end": "2026-11-22T01:06:00Z", "verdict": "anomaly", "class": "cache_pollution"},
        headers=BASIC,
    )  # fmt: skip
    assert r.status_code == 303
    f = tmp_path / "labels.csv"
    f.write_text(client.get("/labels", headers=BASIC).get_data(as_text=True))

    times = T0 + np.arange(0, 600, 10.0)
    samples = pd.DataFrame(
        {"timestamp": times, "instance": "dns-a:53", "name": "up", "labels": "", "value": 1.0}
    )
    ds = merge_label_files(
        ds_mod.Dataset(samples, ds_mod.empty_labels(), {"step_seconds": 10.0}), [f]
    )
    src = ds_mod.label_sources_at(ds, "dns-a:53", times)
    lab = ds.label_at("dns-a:53", times)
    rel = times - T0
    assert (src[(rel > 0) & (rel <= 120)] == "false_alarm").all()
    assert (lab[(rel > 300) & (rel <= 360)] == "cache_pollution").all()
    assert (src[rel > 400] == "").all()
