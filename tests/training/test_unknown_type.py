"""An anomaly unlike every class the model was trained on is typed `unknown`, not forced into
the nearest class (cache_thrash came out as random_subdomain, and the verdict form pre-filled
that wrong class, so it flowed back into training)."""

from __future__ import annotations

import numpy as np

from coredns_anomaly.contracts.names import UNKNOWN_TYPE
from coredns_anomaly.exporter.bundle import nearest_types
from coredns_anomaly.training.detector import AnomalyDetector


def test_a_class_never_trained_on_is_unknown_and_known_ones_keep_their_names(make_series):
    train = [make_series("a", seed=1, steps=900)]  # spike and drift
    val = [make_series("a", seed=2, steps=500)]
    det = AnomalyDetector("autoencoder", window=8, filters=16, seed=1).train(
        15, 64, train, validation=val
    )
    assert det.type_radius is not None and det.type_radius > 0
    test = make_series("b", seed=3, steps=900, classes=("spike", "drift", "both"))
    pred = det.predict([test])
    for cls, named in (("spike", "spike"), ("drift", "drift")):
        m = pred.labels == cls
        assert (pred.anomaly_type[m] == named).mean() > 0.8, cls
    unseen = pred.labels == "both"  # two features that no trained class moved, together
    assert (pred.anomaly_type[unseen] == UNKNOWN_TYPE).mean() > 0.8


def test_the_rule_is_the_exporters():
    C = np.array([[3.0, 0.0], [0.0, -3.0]])
    prof = np.array([[2.5, 0.2], [0.1, -2.0], [3.0, 3.0]])
    assert nearest_types(prof, ("spike", "drift"), C, beyond=1.5) == [
        "spike",
        "drift",
        UNKNOWN_TYPE,
    ]
    assert nearest_types(prof, ("spike", "drift"), C, beyond=np.inf)[2] == "spike"
    assert nearest_types(prof, (), np.zeros((0, 2)), beyond=1.0) == ["", "", ""]
