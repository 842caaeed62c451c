"""The lab's fault signatures, injected into a fleet's own healthy data, to estimate recall.

A signature is what one labelled lab episode looked like in baseline units: per step and
feature, z = (X - loc) / spread against that lab instance's own replayed baseline (the
exporter's rule, exporter/baseline.py). Injected into a fleet instance it becomes
X + z * spread_fleet, so a fault that moved the lab's latency by 8 of its robust spreads moves
the fleet's latency by 8 of the fleet's. Rows where the lab target was down (every feature
NaN) are down rows in the fleet too; features the fleet lacks (NaN) stay NaN.

Time: lab episodes last 30-70 s at a 2 s step, which at a 30 s step would be 1-2 scrapes.
Each signature is stretched by `max(1, min_steps * fleet_step / 30 s)` (a 30 s lab episode
lasts at least `min_steps` fleet steps; with the default 6, at 30 s the episodes last 3-7 min
= 6-14 steps, at 2 s they keep their length) and resampled by linear interpolation in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..exporter.baseline import BaselineSpec, replay
from .series import Series, attach_baseline, episodes, kept_out_of_baseline

SHORTEST_LAB_EPISODE_S = 30.0
Z_CLIP = 50.0  # a lab z beyond this says "very far"; more adds nothing but overflow
INJECT_SOURCE = "inject"


@dataclass
class Signature:
    cls: str
    origin: str  # dataset:instance@start
    z: np.ndarray  # (n, F); NaN = the lab had no value
    down: np.ndarray  # (n,) bool: the lab target was down at that step
    step_seconds: float

    @property
    def duration(self) -> float:
        return len(self.z) * self.step_seconds


def _replay_of(s: Series, spec: BaselineSpec):
    rep = getattr(s, "baseline", None)
    if rep is None:
        rep = replay(s.X, s.times, kept_out_of_baseline(s), spec)
    return rep


def signatures(series: list[Series], spec: BaselineSpec, origin: str = "") -> list[Signature]:
    """One signature per labelled episode whose baseline was warm when it started."""
    out = []
    for s in series:
        if len(s.times) < 2:
            continue
        step = float(np.median(np.diff(s.times)))
        rep = _replay_of(s, spec)
        for cls, i, j in episodes(s.labels, s.times):
            if not rep.warm[i]:
                continue
            with np.errstate(all="ignore"):
                z = (s.X[i:j] - rep.loc[i]) / rep.spread[i]
            z = np.clip(z, -Z_CLIP, Z_CLIP)
            down = np.isnan(s.X[i:j]).all(axis=1)
            out.append(Signature(cls, f"{origin}{s.instance}@{s.times[i]:.0f}", z, down, step))
    return out


def stretch_factor(step_seconds: float, min_steps: int = 6) -> float:
    return max(1.0, min_steps * step_seconds / SHORTEST_LAB_EPISODE_S)


def resample(sig: Signature, step_seconds: float, min_steps: int = 6) -> Signature:
    """The signature at the fleet's step, stretched so it lasts at least `min_steps` steps."""
    dur = sig.duration * stretch_factor(step_seconds, min_steps)
    n = max(min_steps, int(round(dur / step_seconds)))
    src = (np.arange(len(sig.z)) + 0.5) / len(sig.z)
    dst = (np.arange(n) + 0.5) / n
    z = np.full((n, sig.z.shape[1]), np.nan)
    for f in range(sig.z.shape[1]):
        ok = np.isfinite(sig.z[:, f])
        if ok.sum() >= 1:
            z[:, f] = np.interp(dst, src[ok], sig.z[ok, f])
    nearest = np.clip(np.round(dst * len(sig.z) - 0.5).astype(int), 0, len(sig.z) - 1)
    return Signature(sig.cls, sig.origin, z, sig.down[nearest], step_seconds)


def _bounds(feature_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Physical range per feature, by unit: ratios in [0, 1], logs of 1+x and cores >= 0."""
    try:
        from ..exporter.features import FEATURES

        units = {f.name: f.unit for f in FEATURES}
    except Exception:  # pragma: no cover
        units = {}
    lo = np.full(len(feature_names), -np.inf)
    hi = np.full(len(feature_names), np.inf)
    for k, name in enumerate(feature_names):
        u = units.get(name, "")
        if u == "ratio":
            lo[k], hi[k] = 0.0, 1.0
        elif u.startswith("ln(1+") or u == "cores":
            lo[k] = 0.0
    return lo, hi


def apply(s: Series, at: int, sig: Signature, spread: np.ndarray) -> tuple[int, int]:
    """Add `sig` (already at the fleet's step) to `s` in place from step `at`; label it."""
    j = min(len(s.times), at + len(sig.z))
    n = j - at
    add = np.where(np.isfinite(sig.z[:n]), sig.z[:n], 0.0) * spread
    lo, hi = _bounds(s.feature_names)
    # Moved values stay physical; NaN (a feature the fleet lacks) stays NaN.
    X = np.where(add != 0, np.clip(s.X[at:j] + add, lo, hi), s.X[at:j])
    X[sig.down[:n]] = np.nan
    s.X[at:j] = X
    s.labels[at:j] = sig.cls
    s.label_source[at:j] = INJECT_SOURCE
    return at, j


@dataclass
class Injection:
    series: int  # index into the calibration list
    start: int  # step index in the injected copy
    end: int
    cls: str
    origin: str


def slot_steps(n: int, window: int) -> tuple[int, int]:
    """(healthy context steps before an episode of n steps, steps the placement takes)."""
    return window + 2, window + 2 + n


def plan(
    healthy: list[np.ndarray],
    sigs: list[Signature],
    window: int,
    rng: np.random.Generator,
    rounds: int = 1,
) -> list[tuple[int, int, int]]:
    """Non-overlapping placements on healthy stretches: (series index, start step, signature).

    Each placement takes a window + 2 healthy steps of context (so the windows at the
    episode's start see no earlier injection) and then the episode's own steps, which must be
    healthy too (never on top of a labelled or missing step). Signatures are dealt class by
    class (round robin), each into a random healthy run with room left, so every class gets
    placements when there is less room than signatures.
    """
    if not sigs:
        return []
    free: list[list[int]] = []  # [series, start, end) of healthy runs not yet used
    for si, h in enumerate(healthy):
        m = np.concatenate([[0], np.asarray(h, np.int8), [0]])
        d = np.diff(m)
        free += [
            [si, int(a), int(b)]
            for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True)
        ]
    by_class: dict[str, list[int]] = {}
    for k in rng.permutation(len(sigs)):
        by_class.setdefault(sigs[k].cls, []).append(int(k))
    out = []
    for _ in range(rounds):
        queues = {c: list(v) for c, v in sorted(by_class.items())}
        while any(queues.values()):
            for c in sorted(queues):
                if not queues[c]:
                    continue
                k = queues[c].pop(0)
                before, need = slot_steps(len(sigs[k].z), window)
                fits = [i for i, (_, a, b) in enumerate(free) if b - a >= need]
                if not fits:
                    continue
                seg = free[fits[int(rng.integers(len(fits)))]]
                out.append((seg[0], seg[1] + before, k))
                seg[1] += need
    return out


def inject_all(
    calib: list[Series],
    sigs: list[Signature],
    placements: list[tuple[int, int, int]],
    spec: BaselineSpec,
    attach=None,
) -> tuple[list[Series], list[Injection]]:
    """Copies of the calibration series with the signatures added, baselines recomputed.

    Each series should begin early enough before the steps injected into (fit passes the
    history the baseline needs) that the replayed baseline is warm there; positions in
    `placements` count from the series' start. The series are not modified. `attach(list)`
    replays the copies' baselines (e.g. in parallel); by default attach_baseline one by one.
    """
    copies: dict[int, Series] = {}
    done: list[Injection] = []
    for si, at, k in sorted(placements):
        if si not in copies:
            s = calib[si]
            copies[si] = replace(
                s, X=s.X.copy(), labels=s.labels.copy(), label_source=s.label_source.copy()
            )
        c = copies[si]
        base = _replay_of(calib[si], spec)
        a, b = apply(c, at, sigs[k], base.spread[at])
        done.append(Injection(si, a, b, sigs[k].cls, sigs[k].origin))
    for c in copies.values():
        c.baseline = None  # to be replayed: the exporter's baseline, injected steps flagged
    if attach is not None:
        attach(list(copies.values()))
    for c in copies.values():
        if c.baseline is None:
            attach_baseline(c, spec)
    order = sorted(copies)
    remap = {si: n for n, si in enumerate(order)}
    done = [replace(d, series=remap[d.series]) for d in done]
    return [copies[si] for si in order], done


def debounced(flags: np.ndarray, k: int) -> np.ndarray:
    from .evaluate import debounce

    return debounce(flags, k)


def detections(
    det,
    injected: list[Series],
    inj: list[Injection],
    threshold: float,
    debounce_steps: int = 1,
) -> list[dict]:
    """Per injected episode: detected (the debounced decision fires inside it) and delay."""
    out = []
    for n, s in enumerate(injected):
        data = det.windows([s]) if hasattr(det, "windows") else [s]
        if not len(data):
            continue
        pred = det.predict(data)
        idx = np.searchsorted(s.times, pred.times)
        fire = np.zeros(len(s.times), bool)
        scored = np.zeros(len(s.times), bool)
        fire[idx] = np.asarray(pred.raw) >= threshold
        scored[idx] = True
        # The debounce runs over consecutive scored steps (an unscored step breaks a run).
        runs = debounced(fire & scored, debounce_steps)
        for d in (d for d in inj if d.series == n):
            hits = np.flatnonzero(runs[d.start : d.end])
            out.append(
                {
                    "class": d.cls, "origin": d.origin, "steps": d.end - d.start,
                    "scored_steps": int(scored[d.start : d.end].sum()),
                    "detected": bool(len(hits)), "delay_steps": int(hits[0]) if len(hits) else None,
                }
            )  # fmt: skip
    return out


def recall_by_class(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        c = out.setdefault(r["class"], {"episodes": 0, "detected": 0, "delays": []})
        c["episodes"] += 1
        if r["detected"]:
            c["detected"] += 1
            c["delays"].append(r["delay_steps"])
    for c in out.values():
        c["recall"] = c["detected"] / c["episodes"] if c["episodes"] else None
        c["median_delay_steps"] = float(np.median(c["delays"])) if c["delays"] else None
        del c["delays"]
    return dict(sorted(out.items()))


def overall(rows: list[dict]) -> float | None:
    return sum(r["detected"] for r in rows) / len(rows) if rows else None


def median_delay(rows: list[dict]) -> float | None:
    """Median steps from an episode's start to the first alarm, over detected episodes."""
    delays = [r["delay_steps"] for r in rows if r["detected"]]
    return float(np.median(delays)) if delays else None


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"
