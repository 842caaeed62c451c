"""Bundles the exporter must refuse, each with a message naming what differs; the CLI exits
non-zero with that message and no traceback."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from exporter_testlib import MODEL_DIR, ROOT, copy_model

from coredns_anomaly.exporter.bundle import BundleError, load_bundle, standardize, window_ok
from coredns_anomaly.exporter.features import FEATURE_NAMES


def edit_json(path: Path, fn: Callable[[dict], None]) -> None:
    meta = json.loads((path / "model.json").read_text())
    fn(meta)
    (path / "model.json").write_text(json.dumps(meta))


def resign(path: Path) -> None:
    """Recompute model.json's sha256 so that only the other defect is left."""
    digest = hashlib.sha256((path / "model.tflite").read_bytes()).hexdigest()
    edit_json(path, lambda m: m.__setitem__("sha256", digest))


def _set(dotted: str, value):
    def fn(m: dict) -> None:
        *parents, last = dotted.split(".")
        for p in parents:
            m = m[p]
        m[last] = value

    return fn


def _del(dotted: str):
    def fn(m: dict) -> None:
        *parents, last = dotted.split(".")
        for p in parents:
            m = m[p]
        del m[last]

    return fn


def _rename_feature(m: dict) -> None:
    m["feature_names"][3] = "dns_type_mx_share"


def _reorder_features(m: dict) -> None:
    m["feature_names"][0], m["feature_names"][1] = m["feature_names"][1], m["feature_names"][0]


def _raw(path: Path, dotted: str, literal: str) -> None:
    """Set a field to JSON text json.dumps never writes (1e999, a 5,000-digit integer)."""
    edit_json(path, _set(dotted, "@RAW@"))
    (path / "model.json").write_text((path / "model.json").read_text().replace('"@RAW@"', literal))


def _truncate_tflite(p: Path) -> None:
    (p / "model.tflite").write_bytes((p / "model.tflite").read_bytes()[:4096])
    resign(p)


def _not_tflite(p: Path) -> None:
    (p / "model.tflite").write_bytes(b"PK\x03\x04 this is a zip file, not a flatbuffer" * 50)
    resign(p)


# name -> (how to break a copy of models/default, words the message must contain)
BROKEN: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "wrong checksum": (lambda p: edit_json(p, _set("sha256", "0" * 64)), ("sha256", "does not match", "000000000000")),
    "tflite changed after export": (lambda p: (p / "model.tflite").write_bytes((p / "model.tflite").read_bytes() + b"\0"), ("sha256", "does not match")),
    "wrong schema": (lambda p: edit_json(p, _set("schema_version", 99)), ("schema_version 99", "reads (2)")),
    "no schema": (lambda p: edit_json(p, _del("schema_version")), ("schema_version None",)),
    "a feature renamed": (lambda p: edit_json(p, _rename_feature), ("features differ", "missing ['dns_type_other_share']", "unknown ['dns_type_mx_share']")),
    "a feature dropped": (lambda p: edit_json(p, lambda m: m["feature_names"].pop()), ("features differ", f"missing ['{FEATURE_NAMES[-1]}']")),
    "features reordered": (lambda p: edit_json(p, _reorder_features), ("features differ", "other order")),
    "missing model.tflite": (lambda p: (p / "model.tflite").unlink(), ("model.tflite is missing",)),
    "missing model.json": (lambda p: (p / "model.json").unlink(), ("model.json is missing",)),
    "bad JSON": (lambda p: (p / "model.json").write_text('{"schema_version": 2,'), ("not valid JSON",)),
    "a bundle with the old lab-fitted scaler": (lambda p: edit_json(p, _set("schema_version", 1)), ("schema_version 1", "one lab-fitted scaler", "retrain")),
    "JSON not an object": (lambda p: (p / "model.json").write_text("[1, 2]"), ("JSON object",)),
    "no threshold": (lambda p: edit_json(p, _del("decision.threshold")), ("lacks `decision.threshold`",)),
    "negative threshold": (lambda p: edit_json(p, _set("decision.threshold", -1)), ("decision.threshold -1.0 is not positive",)),
    "no input rule": (lambda p: edit_json(p, _del("input")), ("lacks `input.normalization`",)),
    "another input rule": (lambda p: edit_json(p, _set("input.normalization", "global")), ("'global' is not 'instance_baseline'",)),
    "floors of the wrong width": (lambda p: edit_json(p, lambda m: m["input"]["baseline"]["floor_abs"].pop()), ("floor_abs needs 30 finite values",)),
    "a zero floor": (lambda p: edit_json(p, lambda m: m["input"]["baseline"]["floor_abs"].__setitem__(0, 0.0)), ("floor_abs must be > 0",)),
    "warm-up not a number": (lambda p: edit_json(p, _set("input.baseline.warmup_seconds", "abc")), ("wrong type",)),
    "warm-up missing": (lambda p: edit_json(p, _del("input.baseline.warmup_seconds")), ("lacks 'warmup_seconds'",)),
    "negative warm-up": (lambda p: edit_json(p, _set("input.baseline.warmup_seconds", -5)), ("warmup_seconds -5.0 must be finite and > 0",)),
    "window differs from the model": (lambda p: edit_json(p, _set("window", 9)), ("window 9 x 30", "model input is")),
    "window zero": (lambda p: edit_json(p, _set("window", 0)), ("`window` is 0",)),
    "centroids of the wrong shape": (lambda p: edit_json(p, lambda m: m["anomaly_types"]["centroids"].pop()), ("centroids has shape",)),
    "model.tflite not a TFLite file": (_not_tflite, ("not a loadable TFLite model",)),
    "model.tflite truncated": (_truncate_tflite, ("model.tflite",)),
    # issue 13: these killed a running exporter on hot reload (AttributeError, TypeError,
    # RecursionError) and printed a traceback at start
    "anomaly_types a list": (lambda p: edit_json(p, _set("anomaly_types", [1])), ("`anomaly_types` is [1], must be an object",)),
    "feature_names a number": (lambda p: edit_json(p, _set("feature_names", 5)), ("`feature_names` is 5",)),
    "versions a list": (lambda p: edit_json(p, _set("versions", [])), ("`versions` is [], must be an object",)),
    "JSON nested 100,000 deep": (lambda p: (p / "model.json").write_text("[" * 100_000 + "]" * 100_000), ("not valid JSON", "RecursionError")),
    "a baseline integer of 1e999": (lambda p: _raw(p, "input.baseline.min_rows", "1e999"), ("out of range",)),
    "unknown radius negative": (lambda p: edit_json(p, _set("anomaly_types.unknown_beyond", -1)), ("unknown_beyond", "finite number")),
    "unknown radius a string": (lambda p: edit_json(p, _set("anomaly_types.unknown_beyond", "far")), ("unknown_beyond", "a number")),
    "recent_spread a string": (lambda p: edit_json(p, _set("input.baseline.recent_spread", "yes")), ("wrong type",)),
}  # fmt: skip


def test_a_window_far_from_every_class_is_typed_unknown(tmp_path):
    """A radius in the bundle makes the exporter say `unknown` instead of the nearest class;
    a bundle without one (written before it existed) names the nearest class as before."""
    path = copy_model(tmp_path / "m")
    edit_json(path, _set("anomaly_types.unknown_beyond", 0.5))
    b = load_bundle(path)
    Z = np.zeros((2, b.window, b.n_features), np.float32)
    Z[0] = b.type_centroids[0]  # exactly a known class
    Z[1] = 9.0  # nothing like any class
    assert b.nearest_types(Z) == [b.type_names[0], "unknown"]
    old = copy_model(tmp_path / "old")
    edit_json(old, lambda m: m["anomaly_types"].pop("unknown_beyond", None))
    assert load_bundle(old).nearest_types(Z)[1] in b.type_names


def test_the_shipped_bundle_loads(bundle):
    assert bundle.n_features == len(FEATURE_NAMES) and bundle.window >= 2
    assert bundle.sha256 == json.loads((MODEL_DIR / "model.json").read_text())["sha256"]
    assert bundle.threshold > 0 and bundle.step_seconds > 0
    out = bundle.runtime().run(np.zeros((3, bundle.window, bundle.n_features), np.float32))
    assert out["score"].shape[0] == 3 and np.isfinite(out["score"]).all()


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_bundle_is_refused_naming_what_differs(tmp_path, case):
    path = copy_model(tmp_path / "bad")
    breaker, words = BROKEN[case]
    breaker(path)
    with pytest.raises(BundleError) as info:
        load_bundle(path)
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{case}: {w!r} not in {msg!r}"


def test_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(BundleError, match="is missing"):
        load_bundle(tmp_path / "nope")


def test_standardize_masks_nan_as_the_mean_and_clips():
    X = np.array([[np.nan, 1e9, -1e9, 2.0]])
    Z = standardize(X, np.zeros(4), np.ones(4), 10.0)
    assert Z.dtype == np.float32 and Z.tolist() == [[0.0, 10.0, -10.0, 2.0]]
    assert window_ok(np.array([True, False, False, False]))
    assert not window_ok(np.array([False, False, False, True])), "the last step must be present"
    assert not window_ok(np.array([True, True, True, False])), "most steps must be present"


CLI_CASES = ["wrong checksum", "wrong schema", "a feature renamed", "model.tflite not a TFLite file", "bad JSON", "window differs from the model", "anomaly_types a list", "JSON nested 100,000 deep"]  # fmt: skip


@pytest.mark.parametrize("case", CLI_CASES)
def test_the_cli_exits_non_zero_with_the_message_and_no_traceback(tmp_path, case):
    path = copy_model(tmp_path / "bad")
    breaker, words = BROKEN[case]
    breaker(path)
    r = subprocess.run(
        [str(ROOT / ".venv/bin/coredns-anomaly"), "exporter", "--model", str(path), "--target", "127.0.0.1:1", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    assert "cannot serve the model" in r.stderr, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "cannot serve the model" in ln]
    assert all(w in line for w in words), "the reason is on the one line"
    for w in words:
        assert w in r.stderr, f"{case}: {w!r} not in {r.stderr!r}"
