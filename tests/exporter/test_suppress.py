"""The memory of judged false alarms (exporter/suppress.py): what it holds back, what it lets
through, how it is learned from verdicts, and how a bad one in a bundle is refused."""

from __future__ import annotations

import numpy as np
import pytest

from coredns_anomaly.exporter.suppress import MAX_PROFILES, Suppression, learn

F = 6


def _pattern(rng, n, centre, noise=0.3):
    return centre + noise * rng.standard_normal((n, F))


def test_a_recurring_judged_pattern_is_held_back_and_a_stronger_one_is_not():
    rng = np.random.default_rng(0)
    quirk = np.array([0, 3.0, 0, 0, 0, 0])
    judged = np.vstack([_pattern(rng, 20, quirk) for _ in range(3)])  # three nights judged
    scores = np.full(len(judged), 1.6) + 0.1 * rng.standard_normal(len(judged))
    ids = np.repeat([0, 1, 2], 20)
    spike = _pattern(rng, 30, np.array([0, 6.0, 0, 0, 0, 0]))  # a real fault, same feature
    sup = learn(judged, scores, ids, spike, np.full(30, 3.0))
    assert sup is not None and sup.radius > 0
    tonight = _pattern(rng, 20, quirk)
    assert sup.holds_back(tonight, np.full(20, 1.6)).mean() > 0.8  # the radius: 90% of a new night
    assert not sup.holds_back(tonight, np.full(20, 4.0)).any()  # stronger than ever judged
    assert not sup.holds_back(spike, np.full(30, 3.0)).any()
    other = _pattern(rng, 20, np.array([0, 0, 0, -4.0, 0, 0]))  # another kind of anomaly
    assert not sup.holds_back(other, np.full(20, 1.6)).any()


def test_one_judged_occurrence_is_not_yet_a_pattern():
    rng = np.random.default_rng(1)
    judged = _pattern(rng, 20, np.zeros(F))
    assert learn(judged, np.ones(20), np.zeros(20), np.zeros((0, F)), np.zeros(0)) is None


def test_no_validation_anomaly_is_held_back():
    rng = np.random.default_rng(2)
    quirk = np.array([0, 3.0, 0, 0, 0, 0])
    judged = np.vstack([_pattern(rng, 20, quirk) for _ in range(2)])
    near_fault = _pattern(rng, 10, quirk + np.array([0, 0.4, 0, 0, 0, 0]))  # overlaps the quirk
    sup = learn(judged, np.full(40, 2.0), np.repeat([0, 1], 20), near_fault, np.full(10, 1.5))
    assert sup is None or not sup.holds_back(near_fault, np.full(10, 1.5)).any()


def test_round_trip_and_refusals():
    sup = Suppression(np.ones((2, F)), np.array([1.5, 2.0]), 0.8)
    back = Suppression.from_dict(sup.to_dict(), F)
    assert np.allclose(back.profiles, sup.profiles) and back.radius == 0.8
    bad = [
        ([], "an object"),
        ({**sup.to_dict(), "radius": -1}, "finite and > 0"),
        ({**sup.to_dict(), "radius": True}, "a number"),
        ({**sup.to_dict(), "levels": [1.0]}, "as many"),
        ({**sup.to_dict(), "profiles": [[1.0] * (F - 1), [1.0] * F]}, "rows of 6"),
        ({**sup.to_dict(), "profiles": [[1.0] * F] * (MAX_PROFILES + 1),
          "levels": [1.0] * (MAX_PROFILES + 1)}, "at most"),
    ]  # fmt: skip
    for d, says in bad:
        with pytest.raises(ValueError, match=says):
            Suppression.from_dict(d, F)
