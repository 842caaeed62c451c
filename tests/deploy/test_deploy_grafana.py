"""deploy/grafana: the dashboard is the JSON Grafana expects, every query parses with promtool,
and it reads only series the exporter exports (docs/exporter.md)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from deploy_testlib import DEPLOY, ROOT

DASHBOARD = DEPLOY / "grafana" / "coredns-anomaly.json"
# Grafana's template variables, replaced by something of the same type for promtool.
SUBSTITUTE = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "${instance}": ".*",
    "$instance": ".*",
}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def exprs(dash: dict) -> list[str]:
    found = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            found.append(re.fullmatch(r"label_values\((.+), *\w+\)", var["definition"])[1])
    return found


def substitute(expr: str) -> str:
    for var, value in SUBSTITUTE.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown template variable in {expr}"
    return expr


def test_dashboard_has_the_fields_grafana_requires(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(dashboard):
        g = p["gridPos"]
        assert {"x", "y", "w", "h"} <= g.keys() and g["x"] >= 0 and g["x"] + g["w"] <= 24
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        for t in p["targets"]:
            assert t["refId"] and t["expr"].strip()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"


def test_dashboard_covers_the_issue_panels(dashboard):
    by_title = {p["title"]: p for p in panels(dashboard)}
    text = json.dumps(dashboard)
    assert by_title["Anomaly score per instance"]["type"] == "timeseries"
    assert by_title["Anomaly timeline"]["type"] == "state-timeline"
    for series in (
        "coredns_anomaly_feature_contribution",
        "coredns_anomaly_type",
        "coredns_anomaly_target_up",
        "coredns_anomaly_step_duration_seconds",
        "coredns_anomaly_model_reloads_total",
    ):
        assert series in text


def test_every_query_parses_with_promtool(dashboard, promtool, tmp_path):
    # promtool has no "check expression"; recording rules are parsed with the real PromQL parser.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": substitute(e)}
        for i, e in enumerate(exprs(dashboard))
    ]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{len(rules)} rules found" in res.stdout


def test_queries_read_only_exported_series(dashboard):
    table = (ROOT / "docs" / "exporter.md").read_text()
    exported = set(re.findall(r"^\| `(coredns_anomaly[a-z_]*)`", table, re.M))
    used = {m for e in exprs(dashboard) for m in re.findall(r"\bcoredns_anomaly[a-z_]*", e)}
    assert used and used <= exported, f"not exported: {used - exported}"
