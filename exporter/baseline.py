"""Each instance's own normal: the one rule that turns raw feature rows into model input.

A cluster's CoreDNS differs from the lab's in traffic level, query mix, plugin chain and release.
One scaler fitted on lab traffic reads every such difference as an anomaly, so the model never
sees raw features: per instance, every feature is centred on that instance's own recent median
and divided by its own robust spread (1.4826 x MAD, over half an hour and, at least, over the
last minutes), floored per feature so that a feature that
is near-constant in healthy traffic (SERVFAIL share 0, panics 0) cannot explode when it twitches.

The baseline is learned online. The spread comes from a reservoir of the instance's rows over
the last `horizon_seconds` (every row while learning, then one row per `sample_every` seconds, at
most `capacity` rows); the location from every row of the last `location_seconds` only, so a
level that drifts (a cache filling after a restart, memory kept after a burst) is followed within
minutes instead of being read as an anomaly for half an hour. Rows the detector flags as anomalous are not
added, so an incident is not learned as normal; if an instance stays flagged for longer than
`relearn_seconds` the change is taken as its new normal: a new baseline learns it from
scratch, and replaces the old one (which judges meanwhile) once it is warm. Until the reservoir
spans `warmup_seconds` (and holds `min_rows` rows) the instance is *learning*: its score is
exported for inspection, but it never raises an anomaly.

Training replays exactly this class over each recorded instance (`replay`), so the models are
trained on the representation the exporter serves; the spec travels in the bundle.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from .features import FEATURES

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x this = its standard deviation


def column_medians(X: np.ndarray) -> np.ndarray:
    """np.nanmedian(X, axis=0), NaN for an all-NaN column, without its cost.

    Every instance refreshes its baseline each step while it learns, and numpy's nanmedian on
    a small array goes through masked arrays: it was 40% of a 50-target step (profiled in
    bench/hostile_targets.py). One sort (NaN sorts last) and two gathers give the same values.
    """
    X = np.asarray(X, float)
    if X.shape[0] == 0:
        return np.full(X.shape[1], np.nan)
    S = np.sort(X, axis=0)
    n = X.shape[0] - np.isnan(X).sum(axis=0)
    cols = np.arange(X.shape[1])
    lo, hi = np.maximum((n - 1) // 2, 0), np.maximum(n // 2, 0)
    with np.errstate(invalid="ignore"):
        med = (S[lo, cols] + S[hi, cols]) / 2
    med[n == 0] = np.nan
    return med


# Spread floors by feature unit: (absolute, relative to |median|). One table, every feature.
SPREAD_FLOORS: dict[str, tuple[float, float]] = {
    "ratio": (0.01, 0.0),  # one percentage point
    "log10(s)": (0.03, 0.0),  # ~7% in latency
    "ln(1+req/s)": (0.05, 0.0),  # ~5% in rate
    "ln(1+ev/s)": (0.05, 0.0),
    "ln(1+1/s)": (0.05, 0.0),
    "ln(1+bytes)": (0.01, 0.0),
    "ln(1+entries)": (0.05, 0.0),
    "ln(1+MiB)": (0.02, 0.0),
    "ln(1+n)": (0.05, 0.0),
    "cores": (0.002, 0.1),  # 2 millicores or 10% of the usual use
}


GENERIC_FLOOR = 0.01  # series that are not CoreDNS features (the detector takes any)


def default_floors(n_features: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The CoreDNS features' floors; for any other series, a small uniform floor."""
    if n_features is not None and n_features != len(FEATURES):
        return (GENERIC_FLOOR,) * n_features, (0.0,) * n_features
    missing = sorted({f.unit for f in FEATURES} - set(SPREAD_FLOORS))
    if missing:  # a new feature unit must say how small its spread may get
        raise KeyError(f"SPREAD_FLOORS lacks units {missing}")
    return (
        tuple(SPREAD_FLOORS[f.unit][0] for f in FEATURES),
        tuple(SPREAD_FLOORS[f.unit][1] for f in FEATURES),
    )


def standardize(X: np.ndarray, loc: np.ndarray, spread: np.ndarray, clip: float) -> np.ndarray:
    """Model input: z against a baseline, clipped; a masked (NaN) feature becomes 0 (normal)."""
    Z = (X - loc) / spread
    Z = np.where(np.isfinite(Z), Z, 0.0)
    return np.clip(Z, -clip, clip).astype(np.float32)


class BaselineSpecError(ValueError):
    """A baseline spec that cannot be served; the message names the field."""


@dataclass(frozen=True)
class BaselineSpec:
    """How every instance's normal is learned. Stored in the bundle: training and exporter agree."""

    warmup_seconds: float = 300.0
    min_rows: int = 10
    location_seconds: float = 120.0
    horizon_seconds: float = 1800.0
    capacity: int = 240
    refresh_rows: int = 4  # recompute median/MAD after this many new rows (always while learning)
    relearn_seconds: float = 600.0
    clip: float = 10.0
    learn_below: float = 0.7  # the exporter learns a step only if its score is below this
    # The spread is at least the location window's robust spread (once it holds min_rows
    # rows); bundles written before this field existed did without (from_dict: False).
    recent_spread: bool = True
    floor_abs: tuple[float, ...] = field(default_factory=lambda: default_floors()[0])
    floor_rel: tuple[float, ...] = field(default_factory=lambda: default_floors()[1])

    @classmethod
    def for_features(cls, n_features: int, **kw) -> BaselineSpec:
        floor_abs, floor_rel = default_floors(n_features)
        return cls(floor_abs=floor_abs, floor_rel=floor_rel, **kw)

    @classmethod
    def for_step(cls, step: float, n_features: int | None = None, **kw) -> BaselineSpec:
        """The spec for data scraped every `step` seconds: the location needs >= 8 rows and
        the warm-up >= 20, so at 30 s they grow to 4 and 10 minutes (5 and 2 at 2 s or 15 s)."""
        kw.setdefault("location_seconds", max(120.0, 8 * step))
        kw.setdefault("warmup_seconds", max(300.0, 20 * step))
        return cls.for_features(len(FEATURES) if n_features is None else n_features, **kw)

    @property
    def sample_every(self) -> float:
        return self.horizon_seconds / self.capacity

    def to_dict(self) -> dict:
        d = asdict(self)
        d["floor_abs"], d["floor_rel"] = list(self.floor_abs), list(self.floor_rel)
        return d

    @classmethod
    def from_dict(cls, d: object, n_features: int) -> BaselineSpec:
        if not isinstance(d, dict):
            raise BaselineSpecError("input.baseline must be an object")
        try:
            spec = cls(
                warmup_seconds=float(d["warmup_seconds"]),
                min_rows=int(d["min_rows"]),
                location_seconds=float(d["location_seconds"]),
                horizon_seconds=float(d["horizon_seconds"]),
                capacity=int(d["capacity"]),
                refresh_rows=int(d["refresh_rows"]),
                relearn_seconds=float(d["relearn_seconds"]),
                clip=float(d["clip"]),
                learn_below=float(d.get("learn_below", 1.0)),
                recent_spread=_flag(d.get("recent_spread", False)),
                floor_abs=tuple(float(x) for x in d["floor_abs"]),
                floor_rel=tuple(float(x) for x in d["floor_rel"]),
            )
        except KeyError as exc:
            raise BaselineSpecError(f"input.baseline lacks {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise BaselineSpecError(f"input.baseline has a field of the wrong type: {exc}") from exc
        problems = []
        for name in (
            "warmup_seconds", "location_seconds", "horizon_seconds", "relearn_seconds", "clip",
            "learn_below",
        ):  # fmt: skip
            v = getattr(spec, name)
            if not (math.isfinite(v) and v > 0):
                problems.append(f"{name} {v} must be finite and > 0")
        for name in ("min_rows", "capacity", "refresh_rows"):
            if not 1 <= getattr(spec, name) <= 100_000:
                problems.append(f"{name} must be in 1..100000")
        for name in ("floor_abs", "floor_rel"):
            v = np.asarray(getattr(spec, name))
            if v.shape != (n_features,) or not (np.isfinite(v).all() and (v >= 0).all()):
                problems.append(f"{name} needs {n_features} finite values >= 0")
        if not (np.asarray(spec.floor_abs) > 0).all():
            problems.append("floor_abs must be > 0 for every feature")
        if problems:
            raise BaselineSpecError("input.baseline: " + "; ".join(problems))
        return spec


class InstanceBaseline:
    """One instance's robust location and spread per feature, learned online."""

    def __init__(self, spec: BaselineSpec, n_features: int) -> None:
        self.spec = spec
        self.rows = np.full((spec.capacity, n_features), np.nan)
        self.count = 0  # rows ever added (the reservoir is a ring)
        self.first_ts: float | None = None
        self.last_added_ts = -math.inf
        self.flagged_since: float | None = None  # start of the current flagged stretch
        self.clear_since: float | None = None  # start of the unflagged run inside it
        self.relearns = 0  # times a lasting change was taken as the new normal
        self.shadow: InstanceBaseline | None = None  # the new normal, while it warms up
        self._since_refresh = 0
        self.recent: deque[tuple[float, np.ndarray]] = deque()  # (ts, row) of location_seconds
        self._since_locate = 0
        self._floor_abs = np.asarray(spec.floor_abs, float)
        self._floor_rel = np.asarray(spec.floor_rel, float)
        self.loc = np.full(n_features, np.nan)
        self.spread = self._floor_abs.copy()
        self._res_spread = self.spread

    @property
    def n_rows(self) -> int:
        return min(self.count, self.spec.capacity)

    def warm(self) -> bool:
        """Learned enough to judge: the reservoir spans the warm-up and holds min_rows rows."""
        if self.first_ts is None or self.n_rows < self.spec.min_rows:
            return False
        return self.last_added_ts - self.first_ts >= self.spec.warmup_seconds - 1e-6

    def observe(
        self, row: np.ndarray, ts: float, flagged: bool = False, alarmed: bool | None = None
    ) -> None:
        """Offer the row of the step ending at ts; flagged rows (near or above the threshold)
        are kept out, so an incident is not learned as normal.

        `alarmed` (the exporter's debounced alarm) runs the relearn clock. An alarmed stretch
        ends only after `location_seconds` without an alarm: a new regime that scores around
        the threshold (a cache left full by a flood) dips below it now and then, and those
        dips must not restart its clock. Training's replay passes no `alarmed`: its `flagged`
        are the labels, and a perfect detector's stretch is the labelled episode itself.

        Once the stretch has lasted `relearn_seconds` it is taken as the new normal
        (`relearn`): a new baseline learns it from scratch beside the old one, which keeps
        judging (and alarming) until the new one is warm and replaces it. Only adding the new
        rows to the old reservoir would leave the old regime's spread (near-zero evictions,
        say) on the new level for half an hour.
        """
        if np.isnan(row).all():
            return  # a missing step teaches nothing
        if self.shadow is not None:
            self.shadow.observe(row, ts)  # learning: takes every row
            if self.shadow.warm():
                self._adopt(self.shadow)
            return
        hold = 0.0 if alarmed is None else self.spec.location_seconds
        alarmed = flagged if alarmed is None else alarmed
        if self.warm():
            if alarmed:
                self.clear_since = None
                self.flagged_since = ts if self.flagged_since is None else self.flagged_since
            elif self.flagged_since is not None:
                self.clear_since = ts if self.clear_since is None else self.clear_since
                if ts - self.clear_since >= hold - 1e-6:
                    self.flagged_since = self.clear_since = None
            if (
                self.flagged_since is not None
                and ts - self.flagged_since >= self.spec.relearn_seconds - 1e-6
            ):
                self.relearn()
            elif flagged:
                return
        # A copy: the engine passes a view of its window, which the next step overwrites.
        self.recent.append((ts, np.array(row, float)))
        while self.recent and ts - self.recent[0][0] > self.spec.location_seconds + 1e-6:
            self.recent.popleft()
        self._since_locate += 1
        if self._since_locate >= self.spec.refresh_rows:
            self.locate()
        # While learning every row counts (a short warm-up needs them all); after it, one row
        # per sample_every, so the reservoir spans the horizon.
        if self.warm() and ts - self.last_added_ts < self.spec.sample_every - 1e-6:
            return
        if self.first_ts is None:
            self.first_ts = ts
        self.rows[self.count % self.spec.capacity] = row
        self.count += 1
        self.last_added_ts = ts
        self._since_refresh += 1
        if self._since_refresh >= self.spec.refresh_rows or not self.warm():
            self.refresh()

    def relearn(self) -> None:
        """Start learning the current regime as the new normal, beside the old baseline.

        The old one keeps judging meanwhile: going blind for a warm-up (as a fresh instance
        is) would miss a fault that starts in it, and the alarm that triggered the relearn
        simply lasts until the new baseline replaces the old (`_adopt`).
        """
        self.shadow = InstanceBaseline(self.spec, self.rows.shape[1])
        self.flagged_since = self.clear_since = None
        self.relearns += 1

    def _adopt(self, new: InstanceBaseline) -> None:
        self.rows, self.count, self.first_ts = new.rows, new.count, new.first_ts
        self.last_added_ts, self.recent = new.last_added_ts, new.recent
        self.loc, self.spread, self._res_spread = new.loc, new.spread, new._res_spread
        self._since_refresh = self._since_locate = 0
        self.shadow = None

    def refresh(self) -> None:
        self._since_refresh = 0
        kept = self.rows[: self.n_rows]
        loc = column_medians(kept)  # an all-NaN column (a missing feature) stays NaN
        mad = column_medians(np.abs(kept - loc))
        floor = np.maximum(self._floor_abs, self._floor_rel * np.abs(np.nan_to_num(loc)))
        spread = np.where(np.isfinite(mad), np.maximum(MAD_TO_SIGMA * mad, floor), floor)
        self.loc, self.spread = loc, spread
        self._res_spread = spread
        self.locate()

    def locate(self) -> None:
        """The location from the last location_seconds (the reservoir's median until then)."""
        self._since_locate = 0
        if not self.recent:
            return
        R = np.stack([r for _, r in self.recent])
        recent = column_medians(R)
        self.loc = np.where(np.isfinite(recent), recent, self.loc)
        if self.spec.recent_spread and len(R) >= self.spec.min_rows:
            # After a level shift most of the reservoir still holds the old level: its MAD
            # can be ~0 (no evictions before a flood filled the cache) while the new level
            # is noisy. The spread is never below the location window's own.
            rmad = MAD_TO_SIGMA * column_medians(np.abs(R - recent))
            self.spread = np.fmax(self._res_spread, np.nan_to_num(rmad, nan=0.0))

    def normalize(self, X: np.ndarray) -> np.ndarray:
        """Model input for rows of this instance: z against its own normal, clipped, NaN -> 0."""
        return standardize(X, self.loc, self.spread, self.spec.clip)

    # -- persistence (the exporter's state file) ---------------------------------------
    def to_state(self) -> dict:
        keep = self.rows[: self.n_rows] if self.count <= self.spec.capacity else self.rows
        return {
            "count": self.count,
            "first_ts": self.first_ts,
            "last_added_ts": self.last_added_ts if math.isfinite(self.last_added_ts) else None,
            "rows": [_row_state(r) for r in keep],
            "recent": [[round(ts, 3), _row_state(r)] for ts, r in self.recent],
        }

    @classmethod
    def from_state(cls, spec: BaselineSpec, n_features: int, state: dict) -> InstanceBaseline:
        b = cls(spec, n_features)
        rows = np.asarray(
            [[np.nan if v is None else float(v) for v in r] for r in state["rows"]], float
        ).reshape(-1, n_features)
        if len(rows) > spec.capacity:
            rows = rows[-spec.capacity :]
        b.rows[: len(rows)] = rows
        b.count = int(state["count"]) if len(rows) == spec.capacity else len(rows)
        b.count = max(b.count, len(rows))
        b.first_ts = None if state.get("first_ts") is None else float(state["first_ts"])
        last = state.get("last_added_ts")
        b.last_added_ts = -math.inf if last is None else float(last)
        for ts, r in state.get("recent") or []:
            b.recent.append((float(ts), _row_from_state(r, n_features)))
        if b.n_rows:
            b.refresh()
        return b


def _flag(v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"a flag must be true or false, not {v!r}")
    return v


def _row_state(r: np.ndarray) -> list[float | None]:
    return [None if not math.isfinite(v) else round(float(v), 6) for v in r]


def _row_from_state(r: list, n_features: int) -> np.ndarray:
    row = np.asarray([np.nan if v is None else float(v) for v in r], float)
    if row.shape != (n_features,):
        raise ValueError(f"a saved row has {row.size} values, not {n_features}")
    return row


@dataclass
class Replay:
    """The baseline as the exporter would have had it before each step of a recording."""

    loc: np.ndarray  # (T, F)
    spread: np.ndarray  # (T, F)
    warm: np.ndarray  # (T,) bool: the exporter could have alarmed at this step
    spec: BaselineSpec

    def slice(self, a: int, b: int) -> Replay:
        return Replay(self.loc[a:b], self.spread[a:b], self.warm[a:b], self.spec)

    def normalize_windows(self, Xw: np.ndarray, last: np.ndarray, clip: float) -> np.ndarray:
        """(N, W, F) raw windows ending at steps `last` -> model input, as the exporter builds it."""
        return standardize(Xw, self.loc[last][:, None, :], self.spread[last][:, None, :], clip)


def replay(X: np.ndarray, times: np.ndarray, flagged: np.ndarray, spec: BaselineSpec) -> Replay:
    """Run one instance's rows through InstanceBaseline, scoring each step before learning it.

    `flagged` stands in for the exporter's decision (training passes the labels: a perfect
    detector keeps every anomalous step out of the baseline).
    """
    T, F = X.shape
    b = InstanceBaseline(spec, F)
    loc, spread, warm = np.empty((T, F)), np.empty((T, F)), np.zeros(T, bool)
    for t in range(T):
        loc[t], spread[t], warm[t] = b.loc, b.spread, b.warm()
        b.observe(X[t], float(times[t]), bool(flagged[t]))
    return Replay(loc, spread, warm, spec)
