"""Engineers' false-alarm verdicts, remembered by every model kind.

A network retrained on verdicts moves, but for a model of normal traffic "one metric up by 3
sigma" (a nightly batch job someone judged harmless) and "up by 6" (a fault) differ only in
degree, so the judged pattern can keep alarming. This memory holds it back directly: the type
profiles (last steps' mean z-scores, bundle.type_profile) of the windows engineers marked as
false alarms, each with the score it reached. A would-be alarm is held back when its profile
lies within `radius` of a judged one and its score is no higher than that one's `level`: the
same pattern, no stronger than it was judged. A stronger or different anomaly still alarms.

Learned from the verdicts (`learn`), not hand-set:
- radius: where a new occurrence of a judged pattern falls. Leave one judged episode out: the
  distance from each of its windows to the nearest window of the other episodes; the 90th
  percentile. So a pattern needs verdicts on two occurrences before it is remembered.
- level: the peak score of the judged episode a window belongs to (the engineer judged it up
  to its peak), times the margin by which one occurrence out-peaked all the others (leave one
  episode out again, at least 1, at most 2).
- then the radius shrinks until at most RECALL_BUDGET (2%) of validation's windows of real
  anomalies are held back.

Stdlib and numpy only: the exporter serves it, training learns it; both import this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_PROFILES = 500  # kept in model.json; more judged windows are thinned evenly
RADIUS_QUANTILE = 0.9
MAX_MARGIN = 2.0
# Share of validation's anomalous windows the memory may hold back (issue: recall may not drop
# by more than 0.02): a fault's first windows can look like a judged pattern, and a delay of a
# step there is the price of silencing it.
RECALL_BUDGET = 0.02


@dataclass(frozen=True)
class Suppression:
    profiles: np.ndarray  # (n, F) type profiles of judged false-alarm windows
    levels: np.ndarray  # (n,) normalised score up to which a neighbour is held back
    radius: float

    def holds_back(self, profiles: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Per window (profile, normalised score): is it a judged false alarm again?"""
        profiles = np.asarray(profiles, float)
        out = np.zeros(len(profiles), bool)
        if not len(self.profiles) or not len(profiles):
            return out
        d = np.linalg.norm(profiles[:, None, :] - self.profiles[None, :, :], axis=2)
        level = np.where(d <= self.radius, self.levels[None, :], -np.inf).max(axis=1)
        return np.asarray(scores, float) <= level

    def to_dict(self) -> dict:
        return {
            "profiles": np.round(self.profiles, 5).tolist(),
            "levels": np.round(self.levels, 5).tolist(),
            "radius": float(self.radius),
        }

    @classmethod
    def from_dict(cls, d: object, n_features: int) -> Suppression:
        """ValueError names what is wrong (the bundle loader turns it into a BundleError)."""
        if not isinstance(d, dict):
            raise ValueError("suppression must be an object with profiles, levels and radius")
        radius = d.get("radius")
        if isinstance(radius, bool) or not isinstance(radius, int | float):
            raise ValueError("suppression.radius must be a number")
        if not (math.isfinite(radius) and radius > 0):
            raise ValueError(f"suppression.radius {radius} must be finite and > 0")
        profiles, levels = d.get("profiles"), d.get("levels")
        if not (isinstance(profiles, list) and isinstance(levels, list)):
            raise ValueError("suppression.profiles and suppression.levels must be lists")
        if len(profiles) != len(levels) or len(profiles) > MAX_PROFILES:
            raise ValueError(
                f"suppression: {len(profiles)} profiles and {len(levels)} levels; need as many "
                f"of each, at most {MAX_PROFILES}"
            )
        ok = all(
            isinstance(p, list) and len(p) == n_features and all(_num(x) for x in p)
            for p in profiles
        ) and all(_num(x) for x in levels)
        if not ok:
            raise ValueError(f"suppression.profiles must be rows of {n_features} finite numbers")
        P = np.asarray(profiles, float).reshape(len(profiles), n_features)
        L = np.asarray(levels, float)
        if not (np.isfinite(P).all() and np.isfinite(L).all()):
            raise ValueError("suppression holds a number that is not finite")
        return cls(P, L, float(radius))


def _num(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _episodes(ids: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(ids == e) for e in np.unique(ids)]


def learn(
    profiles: np.ndarray,
    scores: np.ndarray,
    episode_ids: np.ndarray,
    anomalous_profiles: np.ndarray,
    anomalous_scores: np.ndarray,
) -> Suppression | None:
    """The memory of judged false-alarm windows (profiles, normalised scores, which judged
    episode each belongs to), or None when fewer than two episodes were judged. At most
    RECALL_BUDGET of validation's windows of real anomalies (`anomalous_*`) are held back."""
    P = np.asarray(profiles, float)
    S = np.asarray(scores, float)
    ids = np.asarray(episode_ids)
    eps = _episodes(ids)
    if len(eps) < 2:
        return None
    D = np.linalg.norm(P[:, None, :] - P[None, :, :], axis=2)
    other = ids[:, None] != ids[None, :]
    nearest_other = np.where(other, D, np.inf).min(axis=1)
    radius = float(np.quantile(nearest_other, RADIUS_QUANTILE))
    if not (math.isfinite(radius) and radius > 0):
        return None
    # An engineer judged each episode as a whole, up to its peak: every window of it stands
    # for that peak. The margin: how much one occurrence out-peaked all the others.
    peak = np.empty(len(S))
    for e in eps:
        peak[e] = S[e].max()
    margin = max(float(S[e].max() / max(float(np.delete(S, e).max()), 1e-9)) for e in eps)
    levels = peak * min(max(margin, 1.0), MAX_MARGIN)
    if len(P) > MAX_PROFILES:
        keep = np.linspace(0, len(P) - 1, MAX_PROFILES).round().astype(int)
        P, levels = P[keep], levels[keep]
    A = np.asarray(anomalous_profiles, float).reshape(-1, P.shape[1])
    a_s = np.asarray(anomalous_scores, float)
    if len(A):  # shrink until at most RECALL_BUDGET of validation's anomalous windows are held
        d = np.linalg.norm(A[:, None, :] - P[None, :, :], axis=2)
        d = np.where(a_s[:, None] <= levels[None, :], d, np.inf).min(axis=1)  # nearest holder
        allowed = int(np.floor(RECALL_BUDGET * len(A)))
        held = np.sort(d[d <= radius])
        if len(held) > allowed:
            radius = float(held[allowed]) * (1 - 1e-6)  # the (allowed+1)-th nearest is out
        if not radius > 0:
            return None
    return Suppression(P, levels, radius)
