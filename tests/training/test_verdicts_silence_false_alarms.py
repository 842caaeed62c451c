"""False-alarm verdicts change what every model kind alarms on, the autoencoder included
(it trains on normal windows only, so before, a verdict changed nothing in it: same threshold,
same alarms).

A harmless recurring pattern (a nightly batch job: one metric up, half as much as the `spike`
fault) alarms under a model trained without verdicts. Marked as false alarms on the nights it
happened, three things learn from the verdicts: the autoencoder's loss weighs the judged
windows HARD_NEGATIVE_WEIGHT times (it rebuilds the pattern better), its threshold counts a
judged alarm as that many false positives, and the memory of judged false alarms
(exporter/suppress.py, served by the exporter from the bundle) holds back a window that looks
like a judged one and is no stronger. A new night's pattern no longer alarms; the real
anomalies still do.

Scoring replays the baseline with the judged steps kept out of it, as the exporter does for
steps it alarms on (series.kept_out_of_baseline): the pattern is scored as the exporter sees it.
"""

from __future__ import annotations

import pytest

from coredns_anomaly.training.detector import AnomalyDetector
from coredns_anomaly.training.evaluate import debounce
from coredns_anomaly.training.series import NORMAL, Series, attach_baseline

QUIRK = 3.0
# Between the real episodes of the synthetic series ([60 + 90k, 85 + 90k)), after warm-up.
NIGHTS = (95, 185, 275, 455, 635)
TONIGHT = 365
DEBOUNCE = 3


def with_quirk(s: Series, starts, length: int = 30, judged: bool = True) -> Series:
    X, src = s.X.copy(), s.label_source.copy()
    for a in starts:
        X[a : a + length, 1] += QUIRK
        if judged:
            src[a : a + length] = "false_alarm"
    return attach_baseline(Series(s.instance, s.times, X, s.labels.copy(), s.feature_names, src))


def fit(make_series, judged_nights, kind: str = "autoencoder") -> AnomalyDetector:
    train = [make_series("a", seed=1, steps=900)]
    val = [make_series("a", seed=2, steps=500)]
    prod = make_series("prod", seed=7, steps=900)
    judged = [n for n in NIGHTS if n in judged_nights]
    prod = with_quirk(
        with_quirk(prod, [n for n in NIGHTS if n not in judged], judged=False), judged
    )
    det = AnomalyDetector(kind, window=8, filters=16, seed=1)
    return det.train(30, 64, train + [prod], validation=val)


def quirk_alerts(det: AnomalyDetector, tonight: Series) -> bool:
    """Does a new night's pattern raise an alert (DEBOUNCE windows in a row)?"""
    pred = det.predict([tonight])
    inside = (pred.times >= tonight.times[TONIGHT]) & (pred.times < tonight.times[TONIGHT + 30])
    return bool(debounce(pred.is_anomaly, DEBOUNCE)[inside].any())


def real_recall(det: AnomalyDetector, s: Series) -> float:
    pred = det.predict([s])
    real = pred.labels != NORMAL
    return float(debounce(pred.is_anomaly, DEBOUNCE)[real].mean())


@pytest.fixture(scope="module")
def nights(make_series):
    return with_quirk(make_series("tonight", seed=8, steps=500), (TONIGHT,), judged=False)


@pytest.mark.parametrize("kind", ["autoencoder", "classifier", "siamese"])
def test_verdicts_on_the_nights_it_happened_silence_a_new_night(make_series, nights, kind):
    before, after = fit(make_series, (), kind), fit(make_series, NIGHTS, kind)
    assert quirk_alerts(before, nights), "without verdicts the pattern alerts"
    assert not quirk_alerts(after, nights), "with them a new night does not"
    assert after.suppression() is not None
    clean = make_series("clean", seed=9, steps=500)
    # The shipped kind keeps its recall. The supervised kinds are silenced too but lose recall
    # here (the classifier 0.89 -> 0.78, the siamese 0.89 -> 0.79, measured 2026-12-03): they
    # learn "metric 1 up is normal" and the spike fault is metric 1 up, more (open).
    cost = 0.02 if kind == "autoencoder" else 0.12
    assert real_recall(after, clean) >= real_recall(before, clean) - cost
