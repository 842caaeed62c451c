"""The coredns-mixin baseline, evaluated by the real Prometheus over a small synthetic dataset."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.baselines import evaluate_alert_rules, rule_alerts

from .conftest import require

RULES = Path(__file__).resolve().parents[2] / "rules" / "coredns_mixin.yml"
STEP = 15.0
T0 = 1_700_000_000.0  # an old date on purpose: backfilled blocks must survive retention
N = 200  # 50 minutes
JUMP, END = 15 * 60, 35 * 60  # SERVFAIL share 10% on "sick" for these 20 minutes


def synthetic() -> ds_mod.Dataset:
    rng = np.random.default_rng(7)
    rows = []
    for inst in ("sick", "healthy"):
        ok = sf = 0.0
        for k in range(N):
            t = T0 + k * STEP + rng.uniform(-0.5, 0.5)  # scrape jitter
            share = 0.10 if inst == "sick" and JUMP <= k * STEP < END else 0.002
            ok += 100.0 * STEP * (1 - share)
            sf += 100.0 * STEP * share
            for rcode, v in (("NOERROR", ok), ("SERVFAIL", sf)):
                lb = f'plugin="errors",rcode="{rcode}",server="dns://:53",view="",zone="."'
                rows.append((t, inst, "coredns_dns_responses_total", lb, v))
            rows.append((t, inst, "up", "", 1.0))
    samples = pd.DataFrame(rows, columns=list(ds_mod.SAMPLE_COLUMNS))
    return ds_mod.Dataset(samples, ds_mod.empty_labels(), {"step_seconds": STEP})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    require("prometheus")
    require("promtool")
    ds = synthetic()
    times = {
        i: np.sort(ds.samples.loc[ds.samples["instance"] == i, "timestamp"].unique())
        for i in ds.instances
    }
    wd = tmp_path_factory.mktemp("promql")
    out = evaluate_alert_rules(ds, RULES, times, workdir=wd, by_severity=True)
    assert list(wd.iterdir()) == []  # temp TSDBs removed
    return out, times


def test_mixin_rules_pass_promtool_check():
    res = subprocess.run(
        [require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 9 rules found" in res.stdout
    assert len(rule_alerts(RULES)) == 9


def test_errors_high_fires_after_for_on_the_sick_instance_only(evaluated):
    out, times = evaluated
    rel = times["sick"] - T0
    for key in ("CoreDNSErrorsHigh:critical", "CoreDNSErrorsHigh:warning"):
        fired = out["sick"][key]
        assert not fired[rel < JUMP + 600].any(), key  # `for: 10m` holds it back
        assert fired[(rel > JUMP + 13 * 60) & (rel < END)].all(), key
        assert not fired[rel > END + 6 * 60].any(), key  # the 5m rate window has drained
        assert not out["healthy"][key].any(), key
    first = rel[out["sick"]["CoreDNSErrorsHigh:critical"]].min()
    assert JUMP + 600 < first < JUMP + 13 * 60


def test_quiet_alerts_stay_quiet(evaluated):
    out, times = evaluated
    for inst, alerts in out.items():
        assert set(alerts) >= {"CoreDNSDown:critical", "CoreDNSForwardErrorsHigh:warning"}
        for key, fired in alerts.items():
            assert len(fired) == len(times[inst]) and fired.dtype == bool
            if not key.startswith("CoreDNSErrorsHigh"):
                assert not fired.any(), (inst, key)  # incl. CoreDNSDown: `up` is 1 throughout


def test_fleet_mode_and_a_later_sub_range(tmp_path):
    """One Prometheus for the fleet: the fleet-wide SERVFAIL share (~5%) fires for every
    instance. Asked only from JUMP+5m on, the `for:` hold still counts from before that."""
    ds = synthetic()
    times = {
        i: np.sort(ds.samples.loc[ds.samples["instance"] == i, "timestamp"].unique())
        for i in ds.instances
    }
    times = {i: t[t - T0 >= JUMP + 300] for i, t in times.items()}
    out = evaluate_alert_rules(
        ds, RULES, times, workdir=tmp_path, per_instance=False, by_severity=True
    )
    for inst in ("sick", "healthy"):
        rel = times[inst] - T0
        fired = out[inst]["CoreDNSErrorsHigh:warning"]
        assert JUMP + 600 < rel[fired].min() < JUMP + 12 * 60  # < JUMP+5m+10m: hold carried over
        assert not out[inst]["CoreDNSDown:critical"].any()
