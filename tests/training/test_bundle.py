"""The shipped default bundle: checksum, TFLite == Keras on real windows, no Flex ops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from coredns_anomaly.exporter.features import FEATURE_NAMES
from coredns_anomaly.training.ensemble import load_detector
from coredns_anomaly.training.export import ExportError, convert, litert_outputs

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "models" / "default"


@pytest.fixture(scope="module")
def shipped():
    meta = json.loads((BUNDLE / "model.json").read_text())
    det = load_detector(BUNDLE / "keras")
    X = det.windows(ROOT / "data" / "lab-v1").X
    return meta, det, X


def test_bundle_metadata_matches_the_model_and_the_feature_list(shipped):
    meta, det, _ = shipped
    flat = (BUNDLE / "model.tflite").read_bytes()
    assert meta["sha256"] == hashlib.sha256(flat).hexdigest()
    assert meta["feature_names"] == list(FEATURE_NAMES)  # the one feature list, in input order
    assert meta["model_kind"] == det.kind and meta["window"] == det.window
    assert meta["decision"]["threshold"] == pytest.approx(det.threshold)
    assert b"Flex" not in flat
    for key in (
        "schema_version",
        "input",
        "anomaly_types",
        "versions",
        "evaluation",
        "training_data",
    ):
        assert key in meta


@pytest.mark.parametrize("batch", [1, 64])
def test_tflite_matches_keras_within_1e_5_on_real_windows(shipped, batch):
    _, det, X = shipped
    rng = np.random.default_rng(batch)
    xb = X[rng.choice(len(X), batch, replace=False)]
    keras_out = det.serving_model().predict(xb, verbose=0)
    lite = litert_outputs((BUNDLE / "model.tflite").read_bytes(), xb)
    # the score (what the decision reads) within 1e-5; the embedding and the contributions,
    # whose values reach ~3, within 1e-5 of their size (float32 sums in another order)
    assert np.max(np.abs(np.asarray(keras_out["score"]) - lite["score"])) <= 1e-5
    for name in ("embedding", "contributions"):
        np.testing.assert_allclose(
            lite[name], np.asarray(keras_out[name]), rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_a_graph_that_needs_flex_fails_the_export():
    import keras
    import tensorflow as tf

    inp = keras.Input((4, 4))
    # Matrix determinants have no TFLite builtin kernel: only Flex (Select TF ops) runs them.
    out = keras.layers.Lambda(lambda t: tf.linalg.det(t))(inp)
    with pytest.raises(ExportError):
        convert(keras.Model(inp, out))
