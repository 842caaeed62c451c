"""thresholds.json: the writer writes what the reader reads, and nothing the reader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coredns_anomaly.contracts import thresholds

COMMITTED = Path(__file__).resolve().parents[2] / "rules/generated/classic/thresholds.json"


def test_the_writer_writes_the_committed_file_byte_for_byte(tmp_path):
    doc = thresholds.read(COMMITTED)
    path = thresholds.write(doc, tmp_path / "t" / thresholds.FILE)
    assert path.read_bytes() == COMMITTED.read_bytes()
    assert thresholds.read(path) == doc


@pytest.mark.parametrize("key", thresholds.REQUIRED)
def test_the_writer_refuses_what_the_reader_would(tmp_path, key):
    doc = json.loads(COMMITTED.read_text())
    del doc[key]
    with pytest.raises(thresholds.ThresholdsError, match=f"lacks `{key}`.*thresholds learn"):
        thresholds.write(doc, tmp_path / thresholds.FILE)
    assert not list(tmp_path.iterdir())
