"""Choosing the decision rule: debounce, false-alarm counting, threshold + debounce search."""

from __future__ import annotations

import numpy as np
import pytest

from coredns_anomaly.training.evaluate import (
    FalseAlarmCounter,
    debounce,
    debounce_by_instance,
    evaluate_decisions,
)
from coredns_anomaly.training.pipeline import choose_decision, meets_targets
from coredns_anomaly.training.report import false_alarm_statement, poisson_upper
from coredns_anomaly.training.series import NORMAL, Windows


def _loop_debounce(pred, k):
    out, run = np.zeros(len(pred), bool), 0
    for i, p in enumerate(pred):
        run = run + 1 if p else 0
        out[i] = run >= k
    return out


def test_debounce_fires_from_the_kth_consecutive_positive():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pred = rng.random(int(rng.integers(0, 40))) < 0.6
        k = int(rng.integers(1, 5))
        assert (debounce(pred, k) == _loop_debounce(pred, k)).all()
    assert debounce(np.array([1, 1, 0, 1, 1, 1], bool), 2).tolist() == [0, 1, 0, 0, 1, 1]


def _timeline(n=400, episodes=((100, 130), (250, 280)), blips=(50, 200, 330)):
    times = np.arange(n) * 2.0
    labels = np.full(n, NORMAL, object)
    raw = np.full(n, 0.1)
    for a, b in episodes:
        labels[a:b] = "fault"
        raw[a:b] = 0.9
    for i in blips:  # one-step spikes in normal traffic
        raw[i] = 0.95
    return times, labels, raw


def test_two_recordings_reusing_an_instance_name_are_separate_timelines():
    # the second recording starts right after the first ends on the same instance name: an
    # alarm at the end of one and the start of the other are two alarms, and debounce resets
    times = np.concatenate([np.arange(10) * 2.0, 1000 + np.arange(10) * 2.0])
    inst = np.full(20, "coredns-0", object)
    labels = np.full(20, NORMAL, object)
    alarm = np.zeros(20, bool)
    alarm[9] = alarm[10] = True
    assert evaluate_decisions(times, inst, labels, alarm, 2.0)["false_alarms"] == 2
    assert not debounce_by_instance(alarm, inst, times, 2).any()


def test_false_alarm_counter_matches_the_full_evaluation():
    times, labels, raw = _timeline()
    inst = np.full(len(times), "a", object)
    counter = FalseAlarmCounter(times, inst, labels, 2.0)
    for k in (1, 2, 3):
        for t in (0.05, 0.5, 0.92):
            alarm = debounce_by_instance(raw >= t, inst, times, k)
            full = evaluate_decisions(times, inst, labels, alarm, 2.0)
            assert counter.count(raw >= t, k) == full["false_alarms"]
    assert counter.normal_hours == pytest.approx(340 * 2 / 3600)


def test_debounce_is_chosen_when_training_traffic_shows_one_step_blips():
    times, labels, raw = _timeline()
    inst = np.full(len(times), "a", object)
    w = Windows(np.zeros((len(times), 1, 1), np.float32), labels, times, inst)
    # validation alone has no blip: no debounce (it would only add delay)
    clean = raw.copy()
    clean[[50, 200, 330]] = 0.1
    t, k, res = choose_decision(clean, w, 2.0, debounces=(1, 2, 3, 4))
    assert k == 1 and res["false_alarms"] == 0 and meets_targets(res)
    # the training split's normal traffic has blips above every useful threshold: debounce 2
    t, k, res = choose_decision(clean, w, 2.0, train=(raw, w), debounces=(1, 2, 3, 4))
    assert k == 2 and res["train_false_alarms"] == 0 and meets_targets(res)
    assert res["median_delay_steps"] == 1.0 and res["episode_recall"] == 1.0


def test_false_alarm_statement_bounds_the_rate():
    assert poisson_upper(0) == pytest.approx(2.996, abs=1e-3)
    text = false_alarm_statement({"normal_hours": 0.5, "false_alarms": 0})[0]
    assert "0 false alarm" in text and "below 5.99 per hour" in text and "72 h" in text


def test_an_episode_with_too_few_scored_steps_counts_point_wise_only():
    # a starved CoreDNS answered one scrape of this episode: no debounced detector can alarm on
    # it, so it is set aside for episode recall (and said so) but still counts point-wise
    times = np.arange(60) * 2.0
    inst = np.full(60, "coredns-0", object)
    labels = np.full(60, NORMAL, object)
    labels[10:30] = "upstream_loss"
    labels[45:46] = "cpu_starvation"
    alarm = np.zeros(60, bool)
    alarm[12:30] = True
    res = evaluate_decisions(times, inst, labels, alarm, 2.0)
    assert res["short_episodes"] == 1
    assert res["per_class"]["cpu_starvation"]["episodes"] == 0
    assert res["per_class"]["cpu_starvation"]["recall_episode"] is None
    assert res["episode_recall"] == 1.0
    assert res["pointwise"]["confusion"]["fn"] == 2 + 1  # the late start and the short episode


def test_alarms_soon_after_a_fault_are_counted_apart_as_aftermath():
    times, labels, _ = _timeline()  # faults at steps 100-130 and 250-280
    inst = np.full(len(times), "coredns-0", object)
    alarm = np.zeros(len(times), bool)
    alarm[[20, 140, 300, 360]] = True  # steady, 10 steps after, 20 after, 80 after
    res = evaluate_decisions(times, inst, labels, alarm, 2.0, aftermath_steps=30)
    assert res["false_alarms"] == 4 and res["aftermath_alarms"] == 2
    assert res["steady_false_alarms"] == 2
    # healthy steps minus the two 30-step aftermaths, in hours
    assert res["steady_normal_hours"] == pytest.approx((400 - 60 - 60) * 2.0 / 3600)
    assert "aftermath_alarms" not in evaluate_decisions(times, inst, labels, alarm, 2.0)
