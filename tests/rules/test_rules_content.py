"""What the generated rules say: names, derived numbers, annotations, metric names."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from coredns_anomaly.rules import anomaly, render
from coredns_anomaly.rules.model import load_model_facts

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "rules" / "generated"


def _rules(path: Path) -> list[dict]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def test_every_alert_is_ours_so_the_webhook_never_learns_from_it():
    for f in GENERATED.rglob("*.rules.yml"):
        for r in _rules(f):
            assert r["alert"].startswith("CoreDNSAnomaly"), (f, r["alert"])
            assert r["labels"]["severity"] in ("warning", "critical")
            assert {"summary", "description", "runbook_url"} <= set(r["annotations"])


def test_anomaly_alert_numbers_come_from_the_bundle():
    m = load_model_facts(ROOT / "models" / "default")
    rules = [
        r for r in _rules(GENERATED / "coredns-anomaly.rules.yml") if r["alert"] == "CoreDNSAnomaly"
    ]
    assert [r["labels"]["severity"] for r in rules] == ["warning", "critical"]
    # one model step (the shipped bundle's is ~2 s) on top of the exporter's own debounce
    assert m.step_seconds == pytest.approx(2, abs=1e-3) and m.debounce_steps >= 1
    assert {r["for"] for r in rules} == {"2s"}
    # bounded kinds publish score / threshold <= 1 / threshold and critical sits halfway,
    # rounded down; an unbounded score (the autoencoder's error) turns critical at twice the
    # threshold
    if m.kind in ("classifier", "siamese"):
        assert m.max_score == pytest.approx(1 / m.threshold)
        crit = math.floor((1 + m.max_score) / 2 * 100) / 100
    else:
        assert math.isinf(m.max_score)
        crit = 2.0
    assert 1 < crit < m.max_score
    # warning: the exporter's verdict alone (it holds an anomaly through short dips below 1)
    assert rules[0]["expr"].startswith('coredns_anomaly_score{job="coredns-anomaly"}\nand\n')
    assert f">= {crit:g}\n" in rules[1]["expr"]
    # critical keeps firing over the exporter's calm span, so it does not flap either
    # the warning: one alert per incident and its recovery (the re-arm hold); 0 turns it off
    assert rules[0]["keep_firing_for"] == "10m"
    plain = anomaly.anomaly_rules(m, replace(anomaly.Options(), rearm_seconds=0))
    assert "keep_firing_for" not in plain[0] and plain[1] == rules[1]
    assert rules[1]["keep_firing_for"] == f"{m.clear_steps * m.step_seconds:.0f}s"
    for r in rules:  # what the webhook's feedback page reads
        ann = r["annotations"]
        assert ann["score"] == '{{ $value | printf "%.3f" }}'
        assert "coredns_anomaly_type{job='coredns-anomaly',instance='%s'}" in ann["anomaly_type"]
        assert "coredns_anomaly_feature_contribution" in ann["top_features"]
        assert ann["runbook_url"] == "docs/runbooks.md#corednsanomaly"


@pytest.mark.parametrize(
    ("kind", "threshold", "expected"),
    [("autoencoder", 0.12, 2.0), ("ensemble", 1.3, 2.0), ("siamese", 0.5, 1.5),
     ("classifier", 0.8, 1.12)],
)  # fmt: skip
def test_critical_level_by_score_kind(bundle, kind, threshold, expected):
    m = load_model_facts(bundle(model_kind=kind, decision__threshold=threshold))
    crit = anomaly.critical_score(m)
    assert crit == pytest.approx(expected)
    assert crit < m.max_score  # always reachable


@pytest.mark.parametrize(("step", "debounce", "hold"), [(2.0, 1, "2s"), (2.0, 3, "2s"), (10.0, 2, "10s"), (1.5, 1, "2s")])  # fmt: skip
def test_for_is_one_model_step_on_top_of_the_exporters_debounce(bundle, step, debounce, hold):
    m = load_model_facts(bundle(step_seconds=step, decision_debounce_steps=debounce))
    assert render.duration(anomaly.for_seconds(m)) == hold


@pytest.mark.parametrize(
    ("edits", "args"),
    [({"model_kind": "autoencoder", "decision__threshold": 0.1}, ()),
     ({"step_seconds": 20.0, "decision_debounce_steps": 3}, ("--job", "anomaly", "--coredns-job", "dns")),
     ({"evaluation__test__median_delay_steps": None}, ("--critical-score", "1.6"))],
)  # fmt: skip
def test_rules_from_other_bundles_pass_their_own_promtool_tests(
    cli, bundle, run_promtool, tmp_path, edits, args
):
    out = tmp_path / "out"
    code, err = cli("rules", "generate", "--model", bundle(**edits), "--out", out, *args)
    assert code == 0, err
    res = run_promtool(
        "check", "rules", "--lint=all", "--lint-fatal", out / "coredns-anomaly.rules.yml"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = run_promtool("test", "rules", out / "tests" / "coredns-anomaly.rules.test.yml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_duration_rounds_up_to_whole_seconds():
    assert [render.duration(s) for s in (0, 0.2, 1.9999921, 2.0004, 2.01, 60, 90, 3725)] == [
        "0s", "1s", "2s", "2s", "3s", "1m", "1m30s", "1h2m5s",
    ]  # fmt: skip


def test_seconds_inverts_duration():
    for s in (0, 2, 59, 60, 90, 800, 3725):
        assert render.seconds(render.duration(s)) == s


def test_classic_current_and_legacy_metric_names():
    current = (GENERATED / "classic" / "coredns-classic.rules.yml").read_text()
    legacy = (GENERATED / "classic" / "coredns-classic-legacy.rules.yml").read_text()
    assert (
        'coredns_proxy_request_duration_seconds_bucket{job="coredns",proxy_name="forward"}'
        in current
    )
    assert "coredns_forward_" not in current
    assert "coredns_forward_request_duration_seconds_bucket" in legacy
    assert "coredns_proxy_" not in legacy
    # the same alerts and thresholds either way
    assert [(r["alert"], r["expr"].rsplit(">", 1)[1]) for r in _rules(GENERATED / "classic" / "coredns-classic.rules.yml")] == [
        (r["alert"], r["expr"].rsplit(">", 1)[1]) for r in _rules(GENERATED / "classic" / "coredns-classic-legacy.rules.yml")
    ]  # fmt: skip


def test_classic_thresholds_in_rules_are_the_learned_ones():
    learned = json.loads((GENERATED / "classic" / "thresholds.json").read_text())
    from coredns_anomaly.contracts.signals import BY_NAME

    rules = {r["alert"]: r for r in _rules(GENERATED / "classic" / "coredns-classic.rules.yml")}
    kept = {n: e for n, e in learned["signals"].items() if "skipped" not in e}
    assert len(rules) == len(kept) >= 6
    for name, entry in kept.items():
        r = rules[BY_NAME[name].alert]
        assert float(r["expr"].rsplit(">", 1)[1]) == entry["threshold"]
        assert entry["threshold"] >= entry["normal_q999"]  # above the learned normal
        assert r["annotations"]["top_features"] == BY_NAME[name].feature
    # a share whose normal traffic already reaches 100% cannot be a rule
    assert all(learned["signals"][n]["threshold"] >= 1 for n in learned["signals"] if n not in kept)
