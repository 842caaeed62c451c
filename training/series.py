"""Generic multivariate time series, the proposal's FIFO-stack windows, and honest splits.

Nothing here knows CoreDNS: a Series is times x features with a class label per step, so the
detector takes any metrics (featurize.py makes CoreDNS Series from datasets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exporter.bundle import standardize

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
        )  # fmt: skip


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
    """Standardisation fit on normal training steps only; NaN (masked) becomes 0 = the mean."""

    mean: np.ndarray
    scale: np.ndarray
    clip: float = 10.0

    @classmethod
    def fit(cls, series: list[Series]) -> Scaler:
        rows = np.concatenate([s.X[s.labels == NORMAL] for s in series])
        mean = np.nanmean(rows, axis=0)
        std = np.nanstd(rows, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        # A feature constant in normal traffic (e.g. panics) still must show when it moves.
        scale = np.where(np.isfinite(std) & (std > 1e-3), std, 1e-3)
        return cls(mean, scale)

    def transform(self, X: np.ndarray) -> np.ndarray:
        return standardize(X, self.mean, self.scale, self.clip)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist(), "clip": self.clip}

    @classmethod
    def from_dict(cls, d: dict) -> Scaler:
        return cls(
            np.asarray(d["mean"], float), np.asarray(d["scale"], float), float(d.get("clip", 10.0))
        )


def make_windows(
    series: list[Series],
    window: int,
    scaler: Scaler,
    max_missing: float = 0.5,
    exclude_classes: tuple[str, ...] = (),
) -> Windows:
    """Every window of `window` steps inside each series (never across series or splits).

    Windows whose last step is missing (target down) or that are mostly missing are dropped:
    the exporter publishes no score for those either. Windows touching any step of
    `exclude_classes` are dropped too (leave-classes-out: never seen, not even as context).
    """
    parts = []
    for s in series:
        if len(s.X) < window:
            continue
        Z = scaler.transform(s.X)
        missing = np.isnan(s.X).all(axis=1)
        idx = np.arange(window - 1, len(s.X))
        miss_frac = np.convolve(missing.astype(float), np.ones(window), "valid") / window
        keep = ~missing[idx] & (miss_frac <= max_missing)
        anomalous = (s.labels != NORMAL).astype(float)
        touched = np.convolve(anomalous, np.ones(window), "valid") > 0
        if exclude_classes:
            excl = np.isin(s.labels, exclude_classes).astype(float)
            keep &= np.convolve(excl, np.ones(window), "valid") == 0
        idx = idx[keep]
        if not len(idx):
            continue
        view = np.lib.stride_tricks.sliding_window_view(Z, window, axis=0)  # (T-W+1, F, W)
        Xw = np.transpose(view[idx - window + 1], (0, 2, 1)).copy()
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


def time_split(series: list[Series], fractions: tuple[float, float] = (0.55, 0.2)) -> Split:
    """Per series: the first part trains, the next validates, the rest tests (time-ordered).

    Each split is its own set of segments, so no window can span two splits, and a boundary
    that falls inside an episode moves to the episode's end: a cut episode leaves the next
    split a stub of a step or two that no debounced detector can alarm on, and counting that
    stub as a missed episode measures the cut, not the model.
    """
    tr, va, te = [], [], []
    for s in series:
        n = len(s.times)
        a = _after_episode(s.labels, int(n * fractions[0]))
        b = _after_episode(s.labels, max(a, int(n * (fractions[0] + fractions[1]))))
        tr.append(s.slice(0, a))
        va.append(s.slice(a, b))
        te.append(s.slice(b, n))
    return Split(tr, va, te)


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
