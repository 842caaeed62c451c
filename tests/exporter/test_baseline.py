"""Per-instance baselines: the rule that turns raw features into model input (exporter/baseline.py).

Training replays the same class over recordings, so these tests pin its behaviour: robust
location and spread, floors, warm-up in seconds at any step, no learning while flagged (until
the change has lasted `relearn_seconds`), and a state that survives a restart unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from coredns_anomaly.exporter.baseline import (
    BaselineSpec,
    BaselineSpecError,
    InstanceBaseline,
    column_medians,
    default_floors,
    replay,
)
from coredns_anomaly.exporter.features import FEATURE_NAMES, FEATURES
from coredns_anomaly.training.series import NORMAL, Scaler, Series, make_windows

F = len(FEATURE_NAMES)


def _rows(n: int, rng: np.random.Generator, level: float = 5.0, noise: float = 0.1) -> np.ndarray:
    X = level + noise * rng.standard_normal((n, F))
    X[:, FEATURE_NAMES.index("dns_rcode_servfail_share")] = 0.0  # near-constant in health
    return X


def _feed(
    b: InstanceBaseline, X: np.ndarray, step: float, t0: float = 1000.0, flagged=None, alarmed=None
):
    for i, row in enumerate(X):
        b.observe(
            row,
            t0 + i * step,
            bool(flagged[i]) if flagged is not None else False,
            None if alarmed is None else bool(alarmed[i]),
        )


def test_every_feature_unit_has_a_floor():
    floor_abs, floor_rel = default_floors()
    assert len(floor_abs) == len(FEATURES) and min(floor_abs) > 0 and min(floor_rel) >= 0


@pytest.mark.parametrize("step", [2.0, 15.0, 30.0])
def test_warm_up_is_measured_in_seconds_at_any_step(step):
    spec = BaselineSpec(warmup_seconds=600, min_rows=10)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(0)
    n_warm = int(600 / step)
    _feed(b, _rows(n_warm, rng), step)
    assert not b.warm()  # 600 s not yet spanned by the reservoir
    _feed(b, _rows(int(60 / step) + 1, rng), step, t0=1000 + n_warm * step)
    assert b.warm()


def test_location_and_spread_are_robust_and_floored():
    spec = BaselineSpec(warmup_seconds=60, min_rows=5)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(1)
    X = _rows(200, rng, level=5.0, noise=0.1)
    X[::20] = 50.0  # 5% wild outliers
    _feed(b, X, 10.0)
    b.refresh()
    j = FEATURE_NAMES.index("dns_requests_rate")
    assert b.loc[j] == pytest.approx(5.0, abs=0.03)
    assert b.spread[j] == pytest.approx(0.1, rel=0.25)  # not blown up by the outliers
    k = FEATURE_NAMES.index("dns_rcode_servfail_share")
    assert b.spread[k] == pytest.approx(spec.floor_abs[k])  # constant 0: the floor, not 0
    z = b.normalize(np.full((1, F), np.nan))
    assert (z == 0).all()  # masked features read as normal


def test_flagged_rows_are_kept_out_until_the_change_lasts():
    spec = BaselineSpec(
        warmup_seconds=60, min_rows=5, relearn_seconds=300, capacity=60, horizon_seconds=600
    )
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(2)
    _feed(b, _rows(60, rng, level=5.0), 10.0)
    assert b.warm()
    j = FEATURE_NAMES.index("dns_requests_rate")
    before = b.loc[j]
    t0 = 1000 + 60 * 10.0
    _feed(b, _rows(25, rng, level=9.0), 10.0, t0=t0, flagged=[True] * 25)  # 250 s < relearn
    assert b.loc[j] == before  # an incident is not learned as normal
    _feed(b, _rows(60, rng, level=9.0), 10.0, t0=t0 + 250, flagged=[True] * 60)
    assert b.loc[j] > 8.5  # a change that lasted past relearn_seconds is the new normal


def test_state_round_trip_keeps_the_baseline():
    spec = BaselineSpec(warmup_seconds=60, min_rows=5)
    b = InstanceBaseline(spec, F)
    X = _rows(500, np.random.default_rng(3))
    X[:, 3] = np.nan  # a missing feature survives as missing
    _feed(b, X, 2.0)
    b.refresh()  # a restored baseline is refreshed from its rows at once
    state = json.loads(json.dumps(b.to_state(), allow_nan=False))  # plain JSON, no NaN
    c = InstanceBaseline.from_state(spec, F, state)
    assert c.warm() == b.warm()
    np.testing.assert_allclose(c.loc, b.loc, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(c.spread, b.spread, atol=1e-5)


def test_replay_is_the_online_baseline_step_by_step():
    """Training's replay sees, before each step, exactly what the exporter's baseline holds."""
    spec = BaselineSpec(warmup_seconds=120, min_rows=5)
    rng = np.random.default_rng(4)
    X, times = _rows(300, rng), 1000 + 2.0 * np.arange(300)
    flagged = np.zeros(300, bool)
    flagged[150:170] = True
    r = replay(X, times, flagged, spec)
    b = InstanceBaseline(spec, F)
    for t in range(300):
        np.testing.assert_array_equal(r.loc[t], b.loc)
        np.testing.assert_array_equal(r.spread[t], b.spread)
        assert r.warm[t] == b.warm()
        b.observe(X[t], times[t], flagged[t])


def test_rows_offered_from_a_reused_buffer_are_kept_as_they_were():
    """The engine offers `st.rows[-1]`, a view of its window that the next step overwrites.

    The baseline kept that view for its 2-minute location, so in the exporter (not in
    training's replay) the location was only ever the last learned row: on env-soak that one
    noisy row, frozen while the instance was flagged, caused most of the false alarms.
    """
    spec = BaselineSpec(warmup_seconds=120, min_rows=5)
    rng = np.random.default_rng(5)
    X, times = _rows(200, rng), 1000 + 2.0 * np.arange(200)
    flagged = np.zeros(200, bool)
    r = replay(X, times, flagged, spec)
    b = InstanceBaseline(spec, F)
    window = np.full((8, F), np.nan)
    for t in range(200):
        np.testing.assert_array_equal(r.loc[t], b.loc, err_msg=f"step {t}")
        window[:-1] = window[1:]  # as TargetState.push shifts its window in place
        window[-1] = X[t]
        b.observe(window[-1], times[t], flagged[t])


def test_training_windows_are_what_the_exporter_feeds_the_model():
    spec = BaselineSpec(warmup_seconds=120, min_rows=5)
    rng = np.random.default_rng(5)
    X, times = _rows(200, rng), 1000 + 2.0 * np.arange(200)
    s = Series("a", times, X, np.full(200, NORMAL, object), FEATURE_NAMES)
    W = 8
    w = make_windows([s], W, Scaler(spec))
    b = InstanceBaseline(spec, F)
    got = {}
    for t in range(200):
        if b.warm() and t >= W - 1:
            got[times[t]] = b.normalize(X[t - W + 1 : t + 1])
        b.observe(X[t], times[t], False)
    assert len(w) == len(got) > 100
    for i, t in enumerate(w.times):
        np.testing.assert_allclose(w.X[i], got[t], atol=1e-6)


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d.pop("clip"), "lacks 'clip'"),
        (lambda d: d.update(capacity=0), "capacity must be in"),
        (lambda d: d.update(floor_rel=[0.0] * 3), "floor_rel needs"),
        (lambda d: d.update(horizon_seconds=float("nan")), "horizon_seconds nan"),
        (lambda d: d.update(min_rows="many"), "wrong type"),
    ],
)
def test_a_bad_spec_is_refused_with_its_field(change, words):
    d = BaselineSpec().to_dict()
    change(d)
    with pytest.raises(BaselineSpecError, match=words.replace("(", r"\(")):
        BaselineSpec.from_dict(d, F)
    with pytest.raises(BaselineSpecError, match="must be an object"):
        BaselineSpec.from_dict([1], F)


def test_the_spec_scales_with_the_scrape_step():
    """>= 8 rows for the location and >= 20 for the warm-up, whatever the step."""
    fast, slow = BaselineSpec.for_step(2.0), BaselineSpec.for_step(30.0)
    assert (fast.location_seconds, fast.warmup_seconds) == (120.0, 300.0)
    assert (slow.location_seconds, slow.warmup_seconds) == (240.0, 600.0)
    assert BaselineSpec.for_step(15.0).warmup_seconds == 300.0


def test_the_location_follows_a_drifting_level_the_spread_remembers_it():
    """A level creeping up in health (a cache filling after a restart) is followed within the
    location window, not read as an anomaly for the whole 30-minute horizon."""
    spec = BaselineSpec(warmup_seconds=300, min_rows=10, location_seconds=120)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(5)
    n = 900  # 30 minutes at 2 s, the level rising from 5 to 6
    X = _rows(n, rng, noise=0.02) + np.linspace(0.0, 1.0, n)[:, None]
    _feed(b, X, 2.0)
    j = FEATURE_NAMES.index("dns_requests_rate")
    assert b.loc[j] == pytest.approx(X[-60:, j].mean(), abs=0.05)  # the last two minutes
    assert np.nanmedian(b.rows[: b.n_rows, j]) < b.loc[j] - 0.2  # the reservoir lags behind
    assert b.spread[j] > 0.1  # the drift widens the spread: slow creep is normal here


def test_column_medians_equal_numpy_nanmedian_with_missing_values():
    """The fast median the baseline refreshes with gives numpy's nanmedian, NaN columns too."""
    import warnings

    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, cols = int(rng.integers(1, 60)), int(rng.integers(1, 8))
        X = rng.normal(size=(rows, cols))
        X[rng.random((rows, cols)) < rng.random()] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = np.nanmedian(X, axis=0)
        np.testing.assert_allclose(column_medians(X), want, equal_nan=True)
    assert np.isnan(column_medians(np.full((3, 2), np.nan))).all()


EV = FEATURE_NAMES.index("cache_evictions_rate")


@pytest.mark.parametrize("recent_spread", [True, False])
def test_after_a_level_shift_the_spread_is_the_new_levels(recent_spread):
    """A flood leaves the cache full: evictions go from exactly 0 to a noisy level. The
    half-hour reservoir is still mostly zeros (MAD 0, the floor), so without the location
    window's own spread every step of the new level would read as 10+ sigmas."""
    spec = BaselineSpec(recent_spread=recent_spread)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(4)
    before = _rows(900, rng)  # 30 min at 2 s
    before[:, EV] = 0.0
    _feed(b, before, 2.0)
    after = _rows(90, rng)  # 3 min of the new regime, learned (not flagged)
    after[:, EV] = 1.0 + 0.3 * rng.standard_normal(90)
    _feed(b, after, 2.0, t0=1000 + 900 * 2.0)
    assert b.loc[EV] == pytest.approx(1.0, abs=0.15)
    if recent_spread:
        assert b.spread[EV] == pytest.approx(0.3, rel=0.35)
    else:
        assert b.spread[EV] == pytest.approx(spec.floor_abs[EV])


def test_an_alarm_that_dips_below_the_threshold_keeps_its_relearn_clock():
    """A new regime scoring around the threshold flickers; dips shorter than the location
    window do not restart the clock, so it is relearned after relearn_seconds all the same."""
    spec = BaselineSpec(warmup_seconds=60, min_rows=5, relearn_seconds=300)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(5)
    _feed(b, _rows(60, rng), 2.0)
    alarmed = np.tile([True] * 20 + [False] * 5, 10)  # 40 s on, 10 s off, for 500 s
    _feed(b, _rows(250, rng, level=7.0), 2.0, t0=1120.0, flagged=alarmed, alarmed=alarmed)
    assert b.relearns == 1
    # Training's replay passes no `alarmed`: any unflagged step ends the stretch there.
    c = InstanceBaseline(spec, F)
    _feed(c, _rows(60, rng), 2.0)
    _feed(c, _rows(250, rng, level=7.0), 2.0, t0=1120.0, flagged=alarmed)
    assert c.relearns == 0


def test_a_relearn_judges_with_the_old_normal_until_the_new_one_is_warm():
    spec = BaselineSpec(warmup_seconds=60, min_rows=5, relearn_seconds=100)
    b = InstanceBaseline(spec, F)
    rng = np.random.default_rng(6)
    j = FEATURE_NAMES.index("dns_requests_rate")
    _feed(b, _rows(60, rng), 2.0)
    old = b.loc[j]
    _feed(b, _rows(51, rng, level=8.0), 2.0, t0=1120.0, flagged=[True] * 51)  # 100 s
    assert b.relearns == 1 and b.shadow is not None
    _feed(b, _rows(20, rng, level=8.0), 2.0, t0=1222.0, flagged=[True] * 20)  # 40 s of 60
    assert b.warm() and b.loc[j] == old  # never blind: the old normal still judges
    _feed(b, _rows(15, rng, level=8.0), 2.0, t0=1262.0, flagged=[True] * 15)
    assert b.shadow is None and b.warm()
    assert b.loc[j] == pytest.approx(8.0, abs=0.1)


def test_a_bundle_from_before_recent_spread_keeps_its_rule():
    d = BaselineSpec().to_dict()
    assert d["recent_spread"] is True
    del d["recent_spread"]
    assert BaselineSpec.from_dict(d, F).recent_spread is False
    with pytest.raises(BaselineSpecError, match="wrong type"):
        BaselineSpec.from_dict({**d, "recent_spread": "yes"}, F)
