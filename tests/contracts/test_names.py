"""The names the roles share (contracts/names.py) are the ones each role uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from coredns_anomaly.contracts import names as N

ROOT = Path(__file__).resolve().parents[2]
SERIES = {v for k, v in vars(N).items() if k.isupper() and str(v).startswith("coredns_anomaly")}


def test_the_series_table_in_the_docs_names_every_series_and_no_other():
    table = re.findall(
        r"^\| `(coredns_anomaly\w*)` \|", (ROOT / "docs/exporter.md").read_text(), re.M
    )
    assert sorted(table) == sorted(SERIES)


def test_every_generated_alert_carries_the_own_prefix_the_webhook_skips():
    names = []
    for f in (ROOT / "rules" / "generated").rglob("*.rules.yml"):
        for group in yaml.safe_load(f.read_text())["groups"]:
            names += [r["alert"] for r in group["rules"] if "alert" in r]
    assert N.ANOMALY_ALERT in names and len(names) > 10
    assert all(re.match(N.OWN_ALERTNAMES, n) and n.startswith(N.ALERT_PREFIX) for n in names)


def test_the_webhook_offers_the_fault_classes_and_knows_the_verdicts():
    from coredns_anomaly.webhook import config, labels

    assert config.DEFAULT_CLASSES == N.FAULT_CLASSES
    assert labels.label_rank("verified", False, N.FALSE_ALARM) == 2
    assert set(N.VERDICTS) == {N.VERDICT_ANOMALY, N.VERDICT_FALSE_ALARM}
