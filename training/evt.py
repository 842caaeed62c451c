"""The tail of healthy scores, and the threshold that spends a false-alarm budget.

Peaks over threshold: above a high empirical quantile `u` of the healthy scores (0.98 by
default) the exceedances `s - u` are fitted with a generalized Pareto distribution (scipy's
`genpareto`, location fixed at 0, maximum likelihood). The probability that one healthy step
scores above `x > u` is then

    P(S > x) = zeta_u * GPD.sf(x - u),    zeta_u = (number of scores above u) / n

and the budget (alarms per instance per day) becomes a per-step probability
`p = budget * step / 86400`: conservatively, every step above the threshold is counted as a
possible alarm (a debounced run of k steps can only be rarer). The threshold is `P^-1(p)`.

Fallbacks, always named in `TailFit.method` and `TailFit.note`:
- `gpd`: at least `min_exceedances` (50) exceedances and the fit converged.
- `exponential`: 10..49 exceedances, or the GPD fit failed or gave a shape outside
  [-0.5, 1]: the shape is fixed at 0 (exponential tail, scale = mean excess), the
  two-parameter model needs far fewer points.
- `max_rule`: fewer than 10 exceedances: threshold = 1.25 x the largest healthy score seen;
  no rate is extrapolated (`expected` is None).
- A budget loose enough that `p >= zeta_u` is read off the empirical quantile (`empirical`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

SECONDS_PER_DAY = 86400.0
MIN_EXCEEDANCES = 50
MIN_EXCEEDANCES_EXPONENTIAL = 10
MAX_RULE_FACTOR = 1.25
SHAPE_RANGE = (-0.5, 1.0)


@dataclass
class TailFit:
    method: str  # gpd | exponential | max_rule
    u: float  # where the tail starts (empirical quantile)
    quantile: float
    zeta: float  # fraction of scores above u
    xi: float | None  # GPD shape (0 for exponential)
    sigma: float | None  # GPD scale
    n: int
    n_exceed: int
    score_max: float
    note: str = ""
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)  # sorted

    def empirical_sf(self, x) -> np.ndarray:
        x = np.atleast_1d(np.asarray(x, float))
        return 1.0 - np.searchsorted(self.scores, x, side="right") / max(1, self.n)

    def sf(self, x) -> np.ndarray:
        """Per-step probability that a healthy score exceeds x (model above u, data below)."""
        from scipy.stats import genpareto

        x = np.atleast_1d(np.asarray(x, float))
        out = self.empirical_sf(x)
        if self.method in ("gpd", "exponential"):
            above = x > self.u
            out[above] = self.zeta * genpareto.sf(x[above] - self.u, self.xi, 0.0, self.sigma)
        return out

    def isf(self, p: float) -> tuple[float, str]:
        """Score level exceeded with per-step probability p, and how it was obtained."""
        from scipy.stats import genpareto

        if self.method == "max_rule":
            return MAX_RULE_FACTOR * self.score_max, "max_rule"
        if p >= self.zeta:
            return float(np.quantile(self.scores, 1.0 - p)), "empirical"
        return float(self.u + genpareto.isf(p / self.zeta, self.xi, 0.0, self.sigma)), self.method

    def to_dict(self) -> dict:
        return {
            "method": self.method, "u": self.u, "quantile": self.quantile, "zeta": self.zeta,
            "xi": self.xi, "sigma": self.sigma, "n": self.n, "n_exceed": self.n_exceed,
            "score_max": self.score_max, "note": self.note,
        }  # fmt: skip


def fit_tail(
    scores: np.ndarray, quantile: float = 0.98, min_exceedances: int = MIN_EXCEEDANCES
) -> TailFit:
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    if not len(s):
        raise ValueError("no finite scores to fit a tail to")
    u = float(np.quantile(s, quantile))
    y = s[s > u] - u
    n, k = len(s), len(y)
    base = dict(
        u=u, quantile=quantile, zeta=k / n, n=n, n_exceed=k, score_max=float(s[-1]), scores=s
    )
    if k < MIN_EXCEEDANCES_EXPONENTIAL:
        return TailFit(
            "max_rule", xi=None, sigma=None,
            note=f"only {k} scores above the {quantile:.3f} quantile (< {MIN_EXCEEDANCES_EXPONENTIAL}): "
            f"threshold = {MAX_RULE_FACTOR} x the largest healthy score, no rate extrapolated",
            **base,
        )  # fmt: skip
    if k >= min_exceedances:
        from scipy.stats import genpareto

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                xi, _, sigma = genpareto.fit(y, floc=0.0)
            if SHAPE_RANGE[0] <= xi <= SHAPE_RANGE[1] and sigma > 0 and math.isfinite(sigma):
                return TailFit("gpd", xi=float(xi), sigma=float(sigma), note="", **base)
            why = f"GPD fit gave shape {xi:.3f} outside {list(SHAPE_RANGE)}"
        except Exception as exc:  # scipy's optimiser can fail on degenerate tails
            why = f"GPD fit failed ({exc})"
    else:
        why = f"only {k} exceedances (< {min_exceedances}) for a GPD fit"
    sigma = float(max(y.mean(), 1e-12))
    return TailFit("exponential", xi=0.0, sigma=sigma, note=f"{why}: exponential tail", **base)


def per_step_probability(budget_per_day: float, step_seconds: float) -> float:
    return budget_per_day * step_seconds / SECONDS_PER_DAY


def threshold_for_budget(
    tail: TailFit, budget_per_day: float, step_seconds: float
) -> tuple[float, str, float | None]:
    """(threshold, how it was obtained, expected alarms per instance per day at it)."""
    p = per_step_probability(budget_per_day, step_seconds)
    thr, how = tail.isf(p)
    return thr, how, expected_alarms_per_day(tail, thr, step_seconds)


def expected_alarms_per_day(tail: TailFit, threshold: float, step_seconds: float) -> float | None:
    """Every exceeding step counted as an alarm (an upper bound on debounced alarms)."""
    if tail.method == "max_rule":
        return None
    return float(tail.sf(threshold)[0] * SECONDS_PER_DAY / step_seconds)
