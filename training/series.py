"""Generic multivariate time series, the proposal's FIFO-stack windows, and honest splits.

Nothing here knows CoreDNS: a Series is times x features with a class label per step, so the
detector takes any metrics (featurize.py makes CoreDNS Series from datasets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..contracts.bundle import NORMALIZATION
from ..contracts.names import FALSE_ALARM
from ..exporter.baseline import BaselineSpec, Replay, replay
from ..exporter.bundle import windows_ok
from ..exporter.features import EVIDENCE

NORMAL = "normal"


@dataclass
class Series:
    """One source's (e.g. one CoreDNS instance's) steps: times (T,), X (T, F), labels (T,)."""

    instance: str
    times: np.ndarray
    X: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...] = ()
    label_source: np.ndarray | None = None  # per step: lab | verified | weak | "" (normal)
    # The instance's own baseline before each step, replayed over the whole recording before
    # any split (a split must not restart the warm-up): see attach_baseline.
    baseline: Replay | None = None

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2 or len(self.times) != len(self.X) or len(self.labels) != len(self.X):
            raise ValueError(
                f"{self.instance}: need times (T,), X (T, F), labels (T,); got "
                f"{np.shape(self.times)}, {self.X.shape}, {np.shape(self.labels)}"
            )
        if not self.feature_names:
            self.feature_names = tuple(f"f{i}" for i in range(self.X.shape[1]))
        if self.label_source is None:
            self.label_source = np.where(self.labels == NORMAL, "", "lab").astype(object)

    def slice(self, a: int, b: int) -> Series:
        return Series(
            self.instance, self.times[a:b], self.X[a:b], self.labels[a:b],
            self.feature_names, self.label_source[a:b],
            None if self.baseline is None else self.baseline.slice(a, b),
        )  # fmt: skip


def typical_step(times: np.ndarray) -> float | None:
    """The scrape interval: the mean of the intervals near the median (missed scrapes left out).
    Not the median alone: a 15 s Prometheus over 2 s scrapes alternates 14 and 16 s gaps."""
    d = np.diff(np.asarray(times, float))
    d = d[d > 0]
    if not len(d):
        return None
    med = float(np.median(d))
    near = d[(d > 0.5 * med) & (d < 1.5 * med)]
    return float(near.mean()) if len(near) else med


def default_spec(s: Series) -> BaselineSpec:
    """The baseline spec for this series' features at its own scrape step."""
    return BaselineSpec.for_step(typical_step(s.times) or 2.0, s.X.shape[1])


def kept_out_of_baseline(s: Series) -> np.ndarray:
    """Steps the exporter would not have learned as normal: anomalies, and the ranges engineers
    marked as false alarms (the exporter was alarming there, so it kept them out). Learning the
    false alarms in replay would fold the benign pattern into the baseline, and the model
    would be taught on inputs the exporter never serves."""
    return (s.labels != NORMAL) | (s.label_source == FALSE_ALARM)


def attach_baseline(s: Series, spec: BaselineSpec | None = None) -> Series:
    """Replay the exporter's per-instance baseline over `s` (labelled steps kept out of it)."""
    spec = spec or default_spec(s)
    s.baseline = replay(s.X, s.times, kept_out_of_baseline(s), spec)
    return s


@dataclass
class Windows:
    """W consecutive steps x F features per row; a window's label is its last step's."""

    X: np.ndarray  # (N, W, F) float32, scaled, NaN already imputed
    labels: np.ndarray  # (N,) class of the last step
    times: np.ndarray  # (N,) time of the last step
    instances: np.ndarray  # (N,)
    sources: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))
    pure: np.ndarray = field(
        default_factory=lambda: np.array([], dtype=bool)
    )  # no anomalous step inside

    @property
    def y(self) -> np.ndarray:
        return (self.labels != NORMAL).astype(np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(
            self.X[mask],
            self.labels[mask],
            self.times[mask],
            self.instances[mask],
            self.sources[mask],
            self.pure[mask] if len(self.pure) == len(self) else self.pure,
        )

    @staticmethod
    def concat(parts: list[Windows]) -> Windows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Windows(
                np.zeros((0, 1, 1), np.float32),
                np.array([], object),
                np.array([]),
                np.array([], object),
                np.array([], object),
            )
        return Windows(
            np.concatenate([p.X for p in parts]), np.concatenate([p.labels for p in parts]),
            np.concatenate([p.times for p in parts]), np.concatenate([p.instances for p in parts]),
            np.concatenate([p.sources for p in parts]), np.concatenate([p.pure for p in parts]),
        )  # fmt: skip


@dataclass
class Scaler:
    """The input rule: every instance against its own normal (exporter/baseline.py).

    Nothing is fitted across instances: `fit` only fixes the baseline spec, which travels in
    the bundle so the exporter learns each instance's baseline exactly as training replayed it.
    """

    spec: BaselineSpec = field(default_factory=BaselineSpec)

    @classmethod
    def fit(cls, series: list[Series], spec: BaselineSpec | None = None) -> Scaler:
        out = cls(spec or (default_spec(series[0]) if series else BaselineSpec.for_features(0)))
        for s in series:
            if s.baseline is None:
                attach_baseline(s, out.spec)
        return out

    @property
    def clip(self) -> float:
        return self.spec.clip

    def windows(self, s: Series, last: np.ndarray, window: int) -> np.ndarray:
        """(N, W, F) model input for the windows of `s` ending at steps `last`."""
        if s.baseline is None or s.baseline.spec != self.spec:
            attach_baseline(s, self.spec)
        assert s.baseline is not None
        view = np.lib.stride_tricks.sliding_window_view(s.X, window, axis=0)  # (T-W+1, F, W)
        Xw = np.transpose(view[last - window + 1], (0, 2, 1))
        return s.baseline.normalize_windows(Xw, last, self.spec.clip)

    def to_dict(self) -> dict:
        return {
            "normalization": NORMALIZATION,
            "baseline": self.spec.to_dict(),
            "evidence": EVIDENCE.to_dict(),  # featurize's FeatureState reads with it
        }

    @classmethod
    def from_dict(cls, d: dict, n_features: int) -> Scaler:
        return cls(BaselineSpec.from_dict(d["baseline"], n_features))


def make_windows(
    series: list[Series],
    window: int,
    scaler: Scaler,
    exclude_classes: tuple[str, ...] = (),
) -> Windows:
    """Every window of `window` steps inside each series (never across series or splits).

    Windows the exporter does not score are dropped, by its rule (exporter/bundle.py
    `windows_ok`: the last step present, most steps present); so are windows while the instance's
    baseline is still learning (the exporter never alarms then). Windows touching any step of
    `exclude_classes` are dropped too (leave-classes-out: never seen, not even as context).
    """
    parts = []
    for s in series:
        if len(s.X) < window:
            continue
        if s.baseline is None or s.baseline.spec != scaler.spec:
            attach_baseline(s, scaler.spec)
        assert s.baseline is not None
        missing = np.isnan(s.X).all(axis=1)  # the target was down: no row (engine.push)
        idx = np.arange(window - 1, len(s.X))
        keep = windows_ok(missing, window) & s.baseline.warm[idx]
        anomalous = (s.labels != NORMAL).astype(float)
        touched = np.convolve(anomalous, np.ones(window), "valid") > 0
        if exclude_classes:
            excl = np.isin(s.labels, exclude_classes).astype(float)
            keep &= np.convolve(excl, np.ones(window), "valid") == 0
        idx = idx[keep]
        if not len(idx):
            continue
        Xw = scaler.windows(s, idx, window)
        parts.append(
            Windows(
                Xw,
                s.labels[idx],
                s.times[idx],
                np.full(len(idx), s.instance, object),
                s.label_source[idx],
                ~touched[idx - window + 1],
            )  # fmt: skip
        )
    return Windows.concat(parts)


@dataclass(frozen=True)
class Split:
    train: list[Series]
    val: list[Series]
    test: list[Series]


# Each instance's timeline: the first TRAIN_FRACTION trains, the next VAL_FRACTION validates,
# the rest (TEST_FRACTION) tests. Every consumer of the split (the pipeline, the classic
# thresholds, their evaluation) goes through time_split, so these are the only copies.
TRAIN_FRACTION = 0.55
VAL_FRACTION = 0.2
TEST_FRACTION = 1.0 - TRAIN_FRACTION - VAL_FRACTION


def time_split(
    series: list[Series],
    fractions: tuple[float, float] = (TRAIN_FRACTION, VAL_FRACTION),
    margin: int = 32,
) -> Split:
    """Per series: the first part trains, the next validates, the rest tests (time-ordered).

    Each split is its own set of segments, so no window can span two splits, and a boundary
    that falls inside an episode moves to the episode's end: a cut episode leaves the next
    split a stub of a step or two that no debounced detector can alarm on, and counting that
    stub as a missed episode measures the cut, not the model.

    Engineers' labels are the exception. A collected range is labelled where people looked,
    often in its newest days, and a time cut would keep those verdicts out of the weights. So
    every run of steps an engineer or an existing rule labelled (verified, false alarm, weak),
    with the `margin` steps before it that its windows need, is taken out of validation and
    test: three runs of four train, every fourth validates (grouped by episode, so one episode
    never feeds both). The test split stays what the lab's ground truth alone measures.
    """
    tr, va, te = [], [], []
    for s in series:
        if s.baseline is None:  # before cutting: a split must not restart the warm-up
            attach_baseline(s)
        n = len(s.times)
        a = _after_episode(s.labels, int(n * fractions[0]))
        b = _after_episode(s.labels, max(a, int(n * (fractions[0] + fractions[1]))))
        tr.append(s.slice(0, a))
        runs = _user_labelled_runs(s, a, margin)
        to_val = [r for k, r in enumerate(runs) if k % 4 == 3]
        tr += [s.slice(x, y) for k, (x, y) in enumerate(runs) if k % 4 != 3]
        va += [s.slice(x, y) for x, y in _minus(a, b, runs) + _clip(to_val, a, n)]
        te += [s.slice(x, y) for x, y in _minus(b, n, runs)]
    return Split(tr, va, te)


USER_SOURCES = ("verified", FALSE_ALARM, "weak")


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) index runs where `mask` is true."""
    f = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(f.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist(), strict=True))


def _user_labelled_runs(s: Series, start: int, margin: int) -> list[tuple[int, int]]:
    """[x, y) runs from `start` on that hold user labels, each widened by `margin` steps before
    it (its windows' history); runs that touch are merged."""
    out: list[tuple[int, int]] = []
    for i, j in true_runs(np.isin(s.label_source[start:], USER_SOURCES)):
        x, y = max(start + i - margin, start), start + j
        if out and x <= out[-1][1]:
            out[-1] = (out[-1][0], y)
        else:
            out.append((x, y))
    return out


def _minus(a: int, b: int, runs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """[a, b) without the runs, as contiguous pieces."""
    out, x = [], a
    for r0, r1 in runs:
        if r1 <= x or r0 >= b:
            continue
        if r0 > x:
            out.append((x, r0))
        x = max(x, r1)
    if x < b:
        out.append((x, b))
    return out


def _clip(runs: list[tuple[int, int]], a: int, b: int) -> list[tuple[int, int]]:
    return [(max(x, a), min(y, b)) for x, y in runs if min(y, b) > max(x, a)]


def _after_episode(labels: np.ndarray, i: int) -> int:
    """`i`, or the end of the episode running across it."""
    while 0 < i < len(labels) and labels[i - 1] != NORMAL and labels[i] == labels[i - 1]:
        i += 1
    return i


def episodes(labels: np.ndarray, times: np.ndarray) -> list[tuple[str, int, int]]:
    """Runs of one anomalous class: (class, first index, last index + 1)."""
    out = []
    i, n = 0, len(labels)
    while i < n:
        if labels[i] == NORMAL:
            i += 1
            continue
        j = i
        while j < n and labels[j] == labels[i] and (j == i or times[j] - times[j - 1] < 60):
            j += 1
        out.append((str(labels[i]), i, j))
        i = j
    return out
