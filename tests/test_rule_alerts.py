"""The baseline's Python part: rule-file parsing and the `for:` / `keep_firing_for:` state machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.baselines import (
    apply_for,
    evaluate_alert_rules,
    parse_duration,
    rule_alerts,
)

MIXIN = Path(__file__).resolve().parents[1] / "rules" / "coredns_mixin.yml"
T = np.arange(12) * 60.0  # one evaluation a minute


def bools(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("15m", 900), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), ("0", 0),
     (None, 0), (0, 0), ("2w", 1209600), ("1y", 31536000)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10", "m", "1.5m", "10m junk", "-1m", 600])
def test_parse_duration_rejects_what_prometheus_rejects(bad):
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        parse_duration(bad)


def test_for_zero_fires_with_the_expression():
    p = bools("001100111000")
    assert (apply_for(p, T, 0) == p).all()


def test_for_needs_the_full_hold_counted_from_the_first_evaluation():
    # expr true at minutes 1..6: pending at 1, firing once t - 1 >= 3, i.e. from minute 4
    got = apply_for(bools("011111100000"), T, 180)
    assert got.tolist() == bools("000011100000").tolist()


def test_one_missing_evaluation_resets_pending():
    # true 1..3, gap at 4, true 5..9: the hold restarts at 5 and fires at 8
    got = apply_for(bools("011101111100"), T, 180)
    assert got.tolist() == bools("000000001100").tolist()


def test_hold_longer_than_the_episode_never_fires():
    assert not apply_for(bools("011111100000"), T, 600).any()


def test_keep_firing_for_holds_a_firing_alert_but_not_a_pending_one():
    # firing from 2 (for 1m), expr gone at 4: kept while t - 4 < 3m, so through minute 6
    got = apply_for(bools("011100000000"), T, 60, keep_firing_for=180)
    assert got.tolist() == bools("001111100000").tolist()
    # pending only (for 5m): vanishes at once
    assert not apply_for(bools("011100000000"), T, 300, keep_firing_for=180).any()
    # reappearing while kept (6, 7): stays firing without a new hold, kept again 8..10
    got = apply_for(bools("011100110000"), T, 60, keep_firing_for=180)
    assert got.tolist() == bools("001111111110").tolist()


def test_uneven_times_use_elapsed_seconds_not_counts():
    t = np.array([0.0, 10, 20, 300, 310, 320])
    assert apply_for(np.ones(6, bool), t, 300).tolist() == [False] * 3 + [True] * 3


def test_mixin_rules_parse():
    rules = rule_alerts(MIXIN)
    names = [r["name"] for r in rules]
    assert names == [
        "CoreDNSDown", "CoreDNSLatencyHigh", "CoreDNSErrorsHigh", "CoreDNSErrorsHigh",
        "CoreDNSForwardLatencyHigh", "CoreDNSForwardErrorsHigh", "CoreDNSForwardErrorsHigh",
        "CoreDNSForwardHealthcheckFailureCount", "CoreDNSForwardHealthcheckBrokenCount",
    ]  # fmt: skip
    down = rules[0]
    assert down["for"] == 900 and down["labels"] == {"severity": "critical"}
    assert down["expr"] == 'absent(up{job="coredns"} == 1)' and down["group"] == "coredns"
    assert all(r["for"] == 600 for r in rules[1:])
    assert [r["labels"]["severity"] for r in rules if r["name"] == "CoreDNSErrorsHigh"] == [
        "critical",
        "warning",
    ]
    for r in rules:  # current metric names only; the ones CoreDNS 1.11 removed are gone
        assert 'job="coredns"' in r["expr"]
        for old in ("coredns_forward_request_duration", "coredns_forward_responses_total",
                    "coredns_forward_healthcheck_failures_total"):  # fmt: skip
            assert old not in r["expr"]


def test_recording_rules_are_not_alerts(tmp_path):
    f = tmp_path / "r.yml"
    f.write_text(
        "groups:\n- name: g\n  rules:\n  - record: a:b\n    expr: up\n"
        "  - alert: X\n    expr: a:b > 0\n    keep_firing_for: 5m\n"
    )
    [x] = rule_alerts(f)
    assert (x["name"], x["for"], x["keep_firing_for"], x["labels"]) == ("X", 0.0, 300.0, {})


def test_missing_prometheus_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    samples = pd.DataFrame([(1.0, "a", "up", "", 1.0)], columns=list(ds_mod.SAMPLE_COLUMNS))
    ds = ds_mod.Dataset(samples, ds_mod.empty_labels(), {"step_seconds": 1.0})
    with pytest.raises(FileNotFoundError, match=r"apt-get install -y prometheus"):
        evaluate_alert_rules(ds, MIXIN, {"a": np.array([1.0])}, workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []
