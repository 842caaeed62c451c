"""The verdict rule: an anomaly starts after `debounce_steps` steps at or above 1 and ends only
after `clear_steps` calm steps (below 1), so a state that hovers around the threshold is one
alarm, not one per crossing; a learning instance never alarms.

The scores are scripted: the decision is what is under test, so the network's output is
replaced by a list of scores (the real LiteRT model is exercised by every other exporter test).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from exporter_testlib import Timeline, metrics_text, prefill

from coredns_anomaly.contracts.bundle import CLEAR_SECONDS, clear_steps
from coredns_anomaly.exporter.engine import Observation


class ScriptedRuntime:
    """Returns the next scripted score (times the bundle's threshold) for every window."""

    def __init__(self, scores: list[float], threshold: float) -> None:
        self.scores, self.threshold = list(scores), threshold

    def run(self, Z: np.ndarray) -> dict[str, np.ndarray]:
        s = self.scores.pop(0)
        return {"score": np.full(len(Z), s * self.threshold, np.float32)}


def verdicts(make_exporter, clock, bundle, scores: list[float], debounce: int, clear: int, suppression=None) -> list[bool]:  # fmt: skip
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl = "10.9.0.1:9153", Timeline("normal")
    served = [0]
    prefill(x, clock, {inst: (tl, served)}, bundle.window + 1)  # warm baseline, full window
    b = dataclasses.replace(
        x.engine.bundle, debounce_steps=debounce, clear_steps=clear, suppression=suppression
    )
    x.engine.bundle = b
    x.engine.runtime = ScriptedRuntime(scores, b.threshold)
    out = []
    for _ in scores:
        clock.now += b.step_seconds
        x.engine.step([Observation(inst, clock.now, text=tl.page(served[0]))])
        served[0] += 1
        out.append(x.engine.states[inst].verdict.anomaly)
    return out


def test_an_anomaly_starts_after_debounce_and_ends_after_clear_steps(make_exporter, clock, bundle):
    scores = [0.5, 1.2, 1.3, 0.8, 1.1, 0.7, 0.6, 0.5, 0.4, 1.5, 0.2]
    got = verdicts(make_exporter, clock, bundle, scores, debounce=2, clear=3)
    #         0.5    1.2    1.3   0.8   1.1   0.7   0.6   0.5    0.4    1.5    0.2
    want = [False, False, True, True, True, True, True, False, False, False, False]
    assert got == want


def test_clear_steps_one_is_the_plain_debounce(make_exporter, clock, bundle):
    scores = [1.2, 1.3, 0.8, 1.1, 1.2, 0.2]
    got = verdicts(make_exporter, clock, bundle, scores, debounce=2, clear=1)
    assert got == [False, True, False, False, True, False]


def test_clear_steps_are_thirty_seconds_at_any_step():
    assert CLEAR_SECONDS == 30.0
    assert [clear_steps(s) for s in (2.0, 15.0, 30.0, 60.0)] == [15, 2, 1, 1]


def test_a_judged_false_alarm_again_is_held_back_and_shown(make_exporter, clock, bundle):
    """A bundle that remembers judged false alarms (exporter/suppress.py): a window close to a
    judged one, scoring no higher than it did, raises no alarm and is shown as held back;
    a stronger one alarms as before."""
    from coredns_anomaly.exporter.suppress import Suppression

    F = bundle.n_features
    # Any window of this healthy timeline lies within the radius; level: raw score 1.5 x threshold.
    memory = Suppression(np.zeros((1, F)), np.array([1.5 * bundle.threshold]), radius=1e3)
    got = verdicts(make_exporter, clock, bundle, [1.2, 1.3, 1.4, 1.2], 2, 1, memory)
    assert got == [False, False, False, False]
    got = verdicts(make_exporter, clock, bundle, [2.0, 2.1, 2.2], 2, 1, memory)
    assert got == [False, True, True]  # stronger than ever judged: an alarm
    assert verdicts(make_exporter, clock, bundle, [1.2, 1.3, 1.4], 2, 1) == [False, True, True]


def test_held_back_is_exported(make_exporter, clock, bundle):
    from coredns_anomaly.exporter.suppress import Suppression

    memory = Suppression(np.zeros((1, bundle.n_features)), np.array([9.0 * bundle.threshold]), 1e3)
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl = "10.9.0.1:9153", Timeline("normal")
    served = [0]
    prefill(x, clock, {inst: (tl, served)}, bundle.window + 1)
    x.engine.bundle = dataclasses.replace(x.engine.bundle, suppression=memory, debounce_steps=1)
    x.engine.runtime = ScriptedRuntime([3.0], x.engine.bundle.threshold)
    clock.now += bundle.step_seconds
    x.engine.step([Observation(inst, clock.now, text=tl.page(served[0]))])
    st = x.engine.states[inst]
    assert st.held_back and not st.verdict.anomaly and st.verdict.score == pytest.approx(3.0)
    text = metrics_text(x)
    assert f'coredns_anomaly_held_back{{instance="{inst}"}} 1.0' in text


def _restart_run(make_exporter, clock, bundle, restarts: list[int], scores: list[float]):
    """Scripted scores over 1 from a CoreDNS that restarts at the given served steps."""
    x = make_exporter(targets=["127.0.0.1:1"])
    inst, tl = "10.9.0.1:9153", Timeline("normal")
    served = [0]
    prefill(x, clock, {inst: (tl, served)}, bundle.window + 1)
    tl.restarts = [served[0] + r for r in restarts]
    b = dataclasses.replace(x.engine.bundle, debounce_steps=2, clear_steps=1)
    x.engine.bundle, x.engine.runtime = b, ScriptedRuntime(scores, b.threshold)
    out = []
    for _ in scores:
        clock.now += b.step_seconds
        x.engine.step([Observation(inst, clock.now, text=tl.page(served[0]))])
        served[0] += 1
        st = x.engine.states[inst]
        out.append((st.verdict.anomaly if st.verdict else False, st.in_restart_grace))
    return x, inst, out


def test_a_restart_cold_start_raises_no_anomaly_for_the_grace(make_exporter, clock, bundle):
    from coredns_anomaly.exporter.engine import RESTART_GRACE_SECONDS

    grace_steps = int(RESTART_GRACE_SECONDS / bundle.step_seconds)
    n = grace_steps + 4
    x, inst, out = _restart_run(make_exporter, clock, bundle, [0], [1.5] * n)
    # the window holds the restart step, so it may not be scored at once; never an anomaly
    # while the grace runs, and at once when it ends with the score still over 1
    assert not any(a for a, _ in out[:grace_steps]), out
    assert all(g for _, g in out[:grace_steps])
    assert out[-1] == (True, False), out
    assert f'coredns_anomaly_restart_grace{{instance="{inst}"}} 0.0' in metrics_text(x)


def test_a_second_restart_within_ten_minutes_gets_no_grace(make_exporter, clock, bundle):
    from coredns_anomaly.exporter.engine import CRASHLOOP_SECONDS

    again = int(CRASHLOOP_SECONDS / bundle.step_seconds / 2)  # 5 minutes later
    scores = [0.5] * (again + 1) + [1.5] * 4
    x, inst, out = _restart_run(make_exporter, clock, bundle, [0, again], scores)
    assert out[1][1] and not out[again + 1][1]  # in grace after the first, not after the second
    assert out[-1][0], out  # crash-looping is judged as usual: the anomaly is raised


def test_a_strong_fault_right_after_a_restart_is_not_held_by_the_grace(
    make_exporter, clock, bundle
):
    from coredns_anomaly.exporter.engine import RESTART_GRACE_SCORE

    scores = [RESTART_GRACE_SCORE + 0.5] * 6
    _, _, out = _restart_run(make_exporter, clock, bundle, [0], scores)
    assert all(g for _, g in out) and out[-1][0], out  # in grace, and alarmed all the same
