"""The ensemble: OR of members with different windows, one TFLite graph, save and load."""

from __future__ import annotations

import json

import numpy as np

from coredns_anomaly.training.detector import AnomalyDetector
from coredns_anomaly.training.ensemble import EnsembleDetector, load_detector


def test_ensemble_ors_members_exports_and_round_trips(series_pair, make_series, tmp_path):
    train, val = series_pair
    ae = AnomalyDetector("autoencoder", window=8, filters=16).train(10, 64, train, validation=val)
    clf = AnomalyDetector("classifier", window=12, filters=16).train(10, 64, train, validation=val)
    ens = EnsembleDetector([ae, clf])
    va = ens.windows(val)
    ens.fit_decision(va)
    assert ens.window == 12 and set(ens.threshold_rules) == {"any_member", "val_f1"}

    test = [make_series("e", seed=9, steps=300)]
    w = ens.windows(test)
    raw = ens.predict(w).raw
    # the ensemble's raw score is the larger of the members' normalised scores
    ae_norm = ae.predict(ae.windows(test)).score
    clf_norm = clf.predict(w).score
    assert np.allclose(raw, np.maximum(ae_norm[-len(w) :], clf_norm), atol=1e-5)

    bundle = ens.export(tmp_path / "bundle", sample=w.X[:64])
    meta = json.loads((bundle / "model.json").read_text())
    assert (
        meta["model_kind"] == "ensemble"
        and meta["export_check"]["max_abs_diff"]["batch_resized"] <= 1e-5
    )
    ens.save(tmp_path / "keras")
    again = load_detector(tmp_path / "keras")
    assert np.allclose(again.predict(w).raw, raw, atol=1e-6)
