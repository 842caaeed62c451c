"""Every generated rule file passes the real promtool: lint fatal, and its unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

GENERATED = Path(__file__).resolve().parents[2] / "rules" / "generated"
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "prometheusrule.yaml"
RULE_FILES = sorted(GENERATED.rglob("*.rules.yml"))
TEST_FILES = sorted(GENERATED.rglob("*.rules.test.yml"))
MANIFESTS = sorted(GENERATED.rglob("prometheusrule*.yaml")) + [DEPLOY]


def test_the_committed_copy_is_complete():
    names = {p.relative_to(GENERATED).as_posix() for p in RULE_FILES + TEST_FILES}
    assert names == {
        "coredns-anomaly.rules.yml", "tests/coredns-anomaly.rules.test.yml",
        "kubernetes/coredns-anomaly.rules.yml", "kubernetes/tests/coredns-anomaly.rules.test.yml",
        "classic/coredns-classic.rules.yml", "classic/tests/coredns-classic.rules.test.yml",
        "classic/coredns-classic-legacy.rules.yml",
        "classic/tests/coredns-classic-legacy.rules.test.yml",
    }  # fmt: skip


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.relative_to(GENERATED).as_posix())
def test_check_rules_lint_fatal(run_promtool, path):
    res = run_promtool("check", "rules", "--lint=all", "--lint-fatal", path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.relative_to(GENERATED).as_posix())
def test_unit_tests_pass(run_promtool, path):
    res = run_promtool("test", "rules", path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.relative_to(GENERATED).as_posix())
def test_every_alert_has_a_firing_and_a_quiet_case(path):
    rules_doc = yaml.safe_load(
        (path.parent / yaml.safe_load(path.read_text())["rule_files"][0]).read_text()
    )
    alerts = {r["alert"] for g in rules_doc["groups"] for r in g["rules"]}
    cases = [c for t in yaml.safe_load(path.read_text())["tests"] for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    quiet = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert fired == alerts
    assert quiet == alerts
    # the healthy neighbour is in the inputs but never expected: firing cases name one instance
    for c in cases:
        for a in c["exp_alerts"]:
            assert a["exp_labels"]["severity"] in ("warning", "critical")
            assert a["exp_annotations"]["runbook_url"].endswith("#" + c["alertname"].lower())


def test_a_wrong_expectation_fails(run_promtool, tmp_path):
    """The unit tests are not vacuous: change one expected annotation and promtool fails."""
    src = GENERATED / "tests" / "coredns-anomaly.rules.test.yml"
    doc = yaml.safe_load(src.read_text())
    doc["rule_files"] = [str(GENERATED / "coredns-anomaly.rules.yml")]
    case = next(c for c in doc["tests"][0]["alert_rule_test"] if c["exp_alerts"])
    case["exp_alerts"][0]["exp_annotations"]["top_features"] = "dns_requests_rate"
    bad = tmp_path / "bad.test.yml"
    bad.write_text(yaml.safe_dump(doc))
    res = run_promtool("test", "rules", bad)
    assert res.returncode != 0 and "FAILED" in res.stdout + res.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_prometheusrule_manifests_hold_valid_rules(run_promtool, tmp_path, path):
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["kind"] == "PrometheusRule"
    assert "namespace" not in doc["metadata"]  # kubectl -n / kustomize decides
    spec = tmp_path / "spec.yml"
    spec.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    res = run_promtool("check", "rules", "--lint=all", "--lint-fatal", spec)
    assert res.returncode == 0, res.stdout + res.stderr


def test_kubernetes_manifest_uses_the_operator_job_names():
    text = DEPLOY.read_text()
    assert 'job="coredns-anomaly-exporter"' in text  # the exporter Service's name
    assert 'up{job="kube-dns"}' in text  # kube-prometheus's CoreDNS job
    assert 'job="coredns-anomaly"}' not in text
