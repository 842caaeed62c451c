"""model.json's contract (contracts/bundle.py): one reader for every role, one writer."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coredns_anomaly.contracts.bundle import BundleError, BundleMeta
from coredns_anomaly.exporter.bundle import load_bundle
from coredns_anomaly.rules.model import RulesError, load_model_facts

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [ROOT / "models" / n for n in ("default", "step15", "step30")]


@pytest.mark.parametrize("bundle", SHIPPED, ids=lambda p: p.name)
def test_the_shipped_bundles_read_and_write_back_unchanged(bundle, tmp_path):
    doc = json.loads((bundle / "model.json").read_text())
    meta = BundleMeta.read(bundle / "model.json")
    assert meta.to_document() == doc
    again = meta.write(tmp_path / "model.json")
    assert again == meta and json.loads((tmp_path / "model.json").read_text()) == doc


def test_the_exporter_and_the_rules_read_the_same_decision():
    meta = BundleMeta.read(SHIPPED[0] / "model.json")
    b, m = load_bundle(SHIPPED[0]), load_model_facts(SHIPPED[0])
    assert b.meta == meta
    assert (b.debounce_steps, b.clear_steps, b.threshold) == (
        m.debounce_steps, m.clear_steps, m.threshold,
    ) == (meta.debounce_steps, meta.clear_steps, meta.threshold)  # fmt: skip


def _copy(tmp_path: Path, **edits) -> Path:
    out = tmp_path / "b"
    shutil.copytree(SHIPPED[0], out, ignore=shutil.ignore_patterns("keras"))
    doc = json.loads((out / "model.json").read_text())
    for k, v in edits.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k] = v
    (out / "model.json").write_text(json.dumps(doc))
    return out


def test_a_bundle_without_debounce_is_refused_by_every_role_naming_the_fix(tmp_path):
    """The exporter used to serve it at 1 while the rules refused it: one rule now."""
    out = _copy(tmp_path, decision_debounce_steps=None)
    with pytest.raises(BundleError, match='add "decision_debounce_steps": 1') as exporter:
        load_bundle(out)
    with pytest.raises(RulesError) as rules:
        load_model_facts(out)
    assert "lacks `decision_debounce_steps`" in str(exporter.value) == str(rules.value)


@pytest.mark.parametrize("clear", [None, 0])
def test_a_bundle_from_before_clear_steps_reads_as_one_calm_step(tmp_path, clear):
    out = _copy(tmp_path, decision_clear_steps=clear)
    assert load_bundle(out).clear_steps == load_model_facts(out).clear_steps == 1


def test_the_writer_refuses_what_the_reader_would(tmp_path):
    meta = BundleMeta.read(SHIPPED[0] / "model.json")
    with pytest.raises(BundleError, match="decision_debounce_steps"):
        dataclasses.replace(meta, debounce_steps=0).write(tmp_path / "model.json")
    assert not (tmp_path / "model.json").exists()
    with pytest.raises(ValueError, match="typed fields"):
        dataclasses.replace(meta, info={"decision_debounce_steps": 3})


def test_numpy_values_are_written_as_plain_json(tmp_path):
    import numpy as np

    meta = BundleMeta.read(SHIPPED[0] / "model.json")
    meta = dataclasses.replace(
        meta, threshold=np.float32(1.5), info={"x": np.arange(3), "y": np.int64(2)}
    )
    back = meta.write(tmp_path / "model.json")
    assert back.threshold == 1.5 and back.info == {"x": [0, 1, 2], "y": 2}


def test_contracts_import_no_other_role_and_no_third_party_package():
    code = (
        "import sys; import coredns_anomaly.contracts.bundle, coredns_anomaly.contracts.names;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'tensorflow', 'flask', 'prometheus_client', 'yaml')"
        " or m.startswith('coredns_anomaly.') and not m.startswith('coredns_anomaly.contracts')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
