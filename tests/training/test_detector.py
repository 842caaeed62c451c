"""AnomalyDetector's API on generic series: train, predict, evaluate, save/import, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coredns_anomaly.training.detector import AnomalyDetector
from coredns_anomaly.training.export import litert_outputs


@pytest.mark.parametrize("kind", ["autoencoder", "classifier", "siamese"])
def test_each_model_learns_synthetic_anomalies(kind, series_pair, make_series):
    train, val = series_pair
    det = AnomalyDetector(kind, window=8, filters=16).initialize_new_weights(6)
    det.train(number_of_iterations=25, batch_size=64, data=train, validation=val)
    res = det.evaluate([make_series("b", seed=3, steps=500)])
    assert res["pointwise"]["f1"] > 0.6, res["pointwise"]
    assert res["episode_recall"] >= 0.8
    assert set(res["per_class"]) == {"spike", "drift"}


def test_type_and_top_features_point_at_what_moved(series_pair, make_series):
    train, val = series_pair
    det = AnomalyDetector("classifier", window=8, filters=16)
    det.train(25, 64, train, validation=val)
    pred = det.predict([make_series("c", seed=4, steps=400)])
    flagged = pred.is_anomaly & (pred.labels == "spike")
    assert flagged.sum() > 5
    assert np.mean(pred.anomaly_type[flagged] == "spike") > 0.8
    assert np.mean([tf[0] == "m1" for tf in np.asarray(pred.top_features, object)[flagged]]) > 0.8


def test_save_import_round_trip_and_export_matches_keras(series_pair, make_series, tmp_path):
    train, val = series_pair
    det = AnomalyDetector("autoencoder", window=8, filters=16)
    det.train(10, 64, train, validation=val)
    det.save(tmp_path / "det")
    again = AnomalyDetector().import_weights(tmp_path / "det")
    test = [make_series("d", seed=5, steps=300)]
    assert np.allclose(det.predict(test).raw, again.predict(test).raw, atol=1e-6)
    bundle = again.export(tmp_path / "bundle", sample=det.windows(test).X[:64])
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["model_kind"] == "autoencoder" and meta["window"] == 8
    assert meta["export_check"]["max_abs_diff"]["batch_resized"] <= 1e-5
    X = det.windows(test).X
    lite = litert_outputs((bundle / "model.tflite").read_bytes(), X[:1])
    keras_out = again.serving_model().predict(X[:1], verbose=0)
    assert np.max(np.abs(lite["score"] - np.asarray(keras_out["score"]))) <= 1e-5


def test_unknown_kind_and_odd_window_are_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        AnomalyDetector("transformer")
    with pytest.raises(ValueError, match="even number"):
        AnomalyDetector(window=7)


def test_autoencoder_mse_score_exports_within_1e_5(series_pair, make_series, tmp_path):
    train, val = series_pair
    det = AnomalyDetector("autoencoder", window=8, filters=16).train(5, 64, train, validation=val)
    assert {"reconstruction_val_f1", "mse_val_f1", "latent_val_f1"} <= set(det.threshold_rules)
    X = det.windows([make_series("f", seed=6, steps=200)]).X
    rule, serving = det.rule, det.serving_model()
    mse = det.raw_scores("mse", X)
    recon = det._main.predict(X, verbose=0)
    expected = np.log1p(np.mean((X - recon)[:, -2:, :] ** 2, axis=(1, 2)))
    assert np.allclose(mse, expected, atol=1e-5)
    # scoring another way changes nothing: same rule, same serving graph
    assert det.rule == rule and det.serving_model() is serving
    det.choose_rule("mse_val_f1")
    assert (
        det.score_mode == "mse" and det.threshold == det.threshold_rules["mse_val_f1"]["threshold"]
    )
    meta = json.loads((det.export(tmp_path / "b", sample=X[:64]) / "model.json").read_text())
    assert meta["decision"]["ae_score"] == "mse" and meta["decision"]["rule"] == "mse_val_f1"
    assert meta["export_check"]["max_abs_diff"]["batch_resized"] <= 1e-5
    with pytest.raises(KeyError, match="no decision rule 'nope'"):
        det.choose_rule("nope")
    # a rule chosen outside `train` is added to the table and used, with its facts
    det.add_rule("budget", 2.5, method="evt")
    assert det.threshold == 2.5 and det.thresholds["budget"] == 2.5 and det.score_mode == "mse"
    assert det.threshold_rules["budget"] == {
        "score": "mse",
        "threshold": 2.5,
        "val_f1": None,
        "method": "evt",
    }
