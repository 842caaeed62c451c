"""Generated docs stay in step with the code they describe."""

from __future__ import annotations

from pathlib import Path

from coredns_anomaly.exporter.cli import features_doc

ROOT = Path(__file__).resolve().parents[1]


def test_feature_table_in_docs_is_current():
    assert (ROOT / "docs" / "features.md").read_text() == features_doc(), (
        "docs/features.md is stale: run `coredns-anomaly features > docs/features.md`"
    )
