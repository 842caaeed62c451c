"""Fault schedules: coverage of classes and intensities, no overlaps, seeded."""

from __future__ import annotations

import collections

import pytest

from coredns_anomaly.lab import faults


@pytest.fixture(scope="module")
def schedule():
    return faults.build_schedule(4, episodes_per_class=8, seed=2026)


def test_every_class_has_enough_episodes_at_spread_intensities(schedule):
    per_class = collections.defaultdict(list)
    for it in schedule:
        if it.anomaly:
            per_class[it.kind].append(it.intensity)
    assert set(per_class) == set(faults.FAULT_CLASSES)
    for levels in per_class.values():
        assert len(levels) == 8
        assert min(levels) <= 0.125 and max(levels) == 1.0
        assert len(set(levels)) == 8


def test_items_of_one_instance_never_overlap_and_benign_events_sit_in_gaps(schedule):
    for i in range(4):
        mine = [it for it in schedule if it.instance == i]
        episodes = [it for it in mine if it.anomaly]
        for a, b in zip(episodes, episodes[1:], strict=False):
            assert a.at + a.duration <= b.at
        for ev in (it for it in mine if not it.anomaly and it.kind != "end"):
            assert ev.kind in faults.BENIGN_EVENTS
            for ep in episodes:
                # at least 8 s clear of any episode, bursts (<= 16 s) included
                assert ev.at + 16 <= ep.at or ev.at >= ep.at + ep.duration + 8


def test_schedule_is_deterministic_per_seed():
    assert faults.build_schedule(2, seed=5) == faults.build_schedule(2, seed=5)
    assert faults.build_schedule(2, seed=5) != faults.build_schedule(2, seed=6)


def test_unknown_fault_class_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown fault class 'nope'"):
        faults.apply_fault(None, "nope", 0.5)  # type: ignore[arg-type]
