"""`coredns-anomaly fit`: learn one fleet's normal from its own history, no labels needed.

    series = load_series([Path("data/prod-2026-11")])        # or collect from Prometheus
    result = fit(series, FitConfig(budget_per_day=1.0), Path("models/fleet"), Path("fit"))

1. The step is the data's own (median scrape interval); mixed or irregular steps are refused.
2. Every instance gets the exporter's per-instance baseline (exporter/baseline.py), replayed
   over its whole timeline with labelled anomalous steps kept out. A *scored healthy step* is
   one whose baseline is warm, whose target answered (not every feature missing) and that no
   label marks anomalous; an instance needs a run of at least `min_healthy_run` (default 10 x
   window) consecutive such steps, at least `min_hours` of data and 10 x window warm steps.
3. Per instance the first `train_fraction` (70%) of the timeline trains an autoencoder on its
   healthy windows (the last 15% of that part steers early stopping), the rest calibrates.
   Training windows are subsampled: random 256-step chunks, `max_train_windows` in all, so a
   fleet of 100 instances x 7 days at 30 s (2M steps) trains in bounded time.
4. The threshold comes from the tail of the healthy calibration scores (training/evt.py): the
   level whose expected rate is the budget, counting every exceeding step as an alarm.
5. Recall is estimated by injecting the lab's labelled fault signatures into the calibration
   data (training/inject.py) and, when the data carries labels, measured on them too.
6. The bundle (model.tflite + model.json + keras/) and fit-report.md/.json with PNGs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts.bundle import clear_steps
from ..exporter.baseline import BaselineSpec
from . import evt, inject
from .series import NORMAL, Series, attach_baseline, episodes

log = logging.getLogger(__name__)

LAB_DATASETS = (Path("data/lab-v1"), Path("data/lab-v2"))
STEP_TOLERANCE = 0.1  # instances whose steps differ by more than 10% are "mixed"
IRREGULAR_FRACTION = 0.1  # more than 10% of intervals off a multiple of the step: irregular


class FitError(ValueError):
    """The data cannot be fitted; a one-line message says why and what to do."""


@dataclass
class FitConfig:
    budget_per_day: float = 1.0  # false alarms per instance per day
    window: int = 8
    epochs: int = 30
    batch_size: int = 256
    train_fraction: float = 0.7
    val_fraction: float = 0.15  # of the training part, for early stopping
    max_train_windows: int = 40_000
    chunk_steps: int = 256
    tail_quantile: float = 0.98
    min_hours: float = 2.0
    min_healthy_run: int | None = None  # steps; default 10 x window
    debounce_steps: int = 1
    base_model: Path | None = None
    lab_datasets: tuple[Path, ...] = LAB_DATASETS
    inject_min_steps: int = 6
    inject_rounds: int = 1
    max_inject_instances: int = 8
    seed: int = 0
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    spec: BaselineSpec | None = None  # None: BaselineSpec.for_step(the data's step)

    @property
    def healthy_run(self) -> int:
        return self.min_healthy_run or 10 * self.window


class Progress:
    """Log lines per phase, with the fraction of the whole fit done."""

    PHASES = ("step", "baselines", "checks", "train", "calibrate", "inject", "export", "report")

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, phase: str, msg: str, frac: float = 0.0) -> None:
        k = self.PHASES.index(phase)
        pct = 100.0 * (k + min(1.0, frac)) / len(self.PHASES)
        log.info("fit: [%3.0f%%] %s: %s (%.0fs)", pct, phase, msg, time.monotonic() - self.t0)


# -- inputs -----------------------------------------------------------------------------


def load_series(
    datasets: list[Any], label_files: list[Path] | None = None, include_weak: bool = True
) -> list[Series]:
    """Featurized series of every dataset (paths or Datasets), label files merged in."""
    from .detector import as_series

    out: list[Series] = []
    for d in datasets:
        for s in as_series(d, label_files or None, include_weak):
            out.append(s)
    return out


def infer_step(series: list[Series]) -> float:
    """The one scrape step of the fleet, from each instance's median interval."""
    steps: dict[str, float] = {}
    for s in series:
        d = np.diff(np.asarray(s.times, float))
        d = d[d > 0]
        if not len(d):
            continue
        med = float(np.median(d))
        r = d / med
        off = (np.abs(r - np.round(r)) > 0.25) | (r < 0.75)
        if off.mean() > IRREGULAR_FRACTION:
            lo, hi = np.percentile(d, [5, 95])
            raise FitError(
                f"instance {s.instance}: scrape intervals disagree ({100 * off.mean():.0f}% of "
                f"them are not a multiple of the median {med:g} s; 5-95% range {lo:g}-{hi:g} s); "
                "collect it again with one fixed --step"
            )
        steps[s.instance] = med
    if not steps:
        raise FitError("too few steps: no instance has two scrapes")
    groups: list[tuple[float, list[str]]] = []
    for inst, st in sorted(steps.items(), key=lambda kv: kv[1]):
        if groups and abs(st - groups[-1][0]) <= STEP_TOLERANCE * groups[-1][0]:
            groups[-1][1].append(inst)
        else:
            groups.append((st, [inst]))
    if len(groups) > 1:
        desc = "; ".join(
            f"{st:g} s: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''} ({len(names)})"
            for st, names in groups
        )
        raise FitError(
            f"mixed scrape steps ({desc}); fit one step at a time: pass the instances of one "
            "step only (separate datasets), or collect all of them with the same --step"
        )
    return round(float(np.median(list(steps.values()))), 3)  # scrape jitter is not a step


def healthy_mask(s: Series) -> np.ndarray:
    """Scored healthy steps: baseline warm, target up, no anomalous label."""
    up = ~np.isnan(s.X).all(axis=1)
    warm = s.baseline.warm if s.baseline is not None else np.ones(len(s.times), bool)
    return up & warm & (s.labels == NORMAL)


def longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    m = np.concatenate([[0], mask.astype(np.int8), [0]])
    d = np.diff(m)
    return int((np.flatnonzero(d == -1) - np.flatnonzero(d == 1)).max())


def check(series: list[Series], step: float, cfg: FitConfig) -> tuple[list[Series], dict]:
    """Instances with enough data and a healthy stretch; FitError when none is left."""
    need_steps = 10 * cfg.window
    short, unhealthy, kept = [], [], []
    best = (0.0, 0, 0)
    for s in series:
        hours = (s.times[-1] - s.times[0] + step) / 3600 if len(s.times) else 0.0
        warm = int(s.baseline.warm.sum()) if s.baseline is not None else len(s.times)
        best = max(best, (hours, len(s.times), warm))
        if hours < cfg.min_hours or warm < need_steps:
            short.append(f"{s.instance} ({hours:.2f} h, {warm} warm steps)")
            continue
        run = longest_run(healthy_mask(s))
        if run < cfg.healthy_run:
            unhealthy.append((s.instance, run))
            continue
        kept.append(s)
    if not kept and short and not unhealthy:
        raise FitError(
            f"too few steps: every instance needs >= {cfg.min_hours:g} h of data and >= "
            f"{need_steps} steps (10 x window {cfg.window}) after the {cfg.spec.warmup_seconds:g} s "
            f"baseline warm-up; the longest has {best[0]:.2f} h, {best[1]} steps, {best[2]} after "
            f"warm-up at {step:g} s; collect a longer range (or lower --min-hours)"
        )
    if not kept:
        longest = max((r for _, r in unhealthy), default=0)
        raise FitError(
            f"no healthy stretch: no instance has {cfg.healthy_run} consecutive scored healthy "
            f"steps (baseline warm, target up, not labelled anomalous; {cfg.healthy_run * step / 60:.0f} "
            f"min at {step:g} s); the longest run is {longest} steps over {len(unhealthy)} "
            f"instance(s){f', and {len(short)} too short' if short else ''}; fit on a range "
            "where the fleet was mostly healthy, or check the labels"
        )
    for s in short:
        log.warning(
            "fit: skipping %s: less than %g h or %d warm steps", s, cfg.min_hours, need_steps
        )
    for inst, run in unhealthy:
        log.warning(
            "fit: skipping %s: longest healthy run %d < %d steps", inst, run, cfg.healthy_run
        )
    return kept, {
        "skipped_short": short,
        "skipped_unhealthy": [f"{i} (longest healthy run {r} steps)" for i, r in unhealthy],
    }


def _attach_one(s: Series, spec: BaselineSpec):
    return attach_baseline(s, spec).baseline


def attach_many(
    series: list[Series], spec: BaselineSpec, workers: int = 1, on_progress=None
) -> None:
    """attach_baseline on every series lacking this spec's baseline, in `workers` processes.

    The replay is a Python loop per step (~4 s per instance-week at 30 s on one core), the
    longest phase of a large fit.
    """
    todo = [s for s in series if s.baseline is None or s.baseline.spec != spec]
    n = len(todo)
    every = max(1, n // 10)
    # Forked workers only: fork is unsafe once TensorFlow is loaded, and spawn re-runs an
    # unguarded calling script; then (e.g. the injection phase) the replay runs here.
    if workers <= 1 or n < 2 * workers or "tensorflow" in sys.modules or not hasattr(os, "fork"):
        for k, s in enumerate(todo):
            attach_baseline(s, spec)
            if on_progress and ((k + 1) % every == 0 or k + 1 == n):
                on_progress(k + 1, n)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        futs = {ex.submit(_attach_one, s, spec): s for s in todo}
        for k, f in enumerate(as_completed(futs)):
            futs[f].baseline = f.result()
            if on_progress and ((k + 1) % every == 0 or k + 1 == n):
                on_progress(k + 1, n)


def _chunks(s: Series, budget: int, cfg: FitConfig, rng: np.random.Generator) -> list[Series]:
    n, W, C = len(s.times), cfg.window, cfg.chunk_steps
    if n < W:
        return []
    if n - W + 1 <= budget or n <= C:
        return [s]
    starts = np.arange(0, n - C + 1, C)
    k = min(len(starts), math.ceil(budget / (C - W + 1)))
    return [s.slice(int(a), int(a) + C) for a in sorted(rng.choice(starts, k, replace=False))]


def _pure(s: Series, window: int) -> np.ndarray:
    """Per step: the window ending here holds only scored healthy steps (nothing labelled)."""
    h = healthy_mask(s).astype(float)
    out = np.zeros(len(h), bool)
    if len(h) >= window:
        out[window - 1 :] = np.convolve(h, np.ones(window), "valid") == window
    return out


def score_steps(det, series: list[Series]) -> list[np.ndarray]:
    """Raw score per step of each series (NaN where the detector publishes none)."""
    out = []
    for s in series:
        raw = np.full(len(s.times), np.nan)
        wins = det.windows([s])
        if len(wins):
            pred = det.predict(wins)
            raw[np.searchsorted(s.times, pred.times)] = pred.raw
        out.append(raw)
    return out


def _alarm_starts(fire: np.ndarray, k: int) -> np.ndarray:
    from .evaluate import debounce

    a = debounce(fire, k)
    return a & ~np.concatenate([[False], a[:-1]])


# -- the fit ----------------------------------------------------------------------------


def fit(
    series: list[Series],
    cfg: FitConfig,
    out: Path,
    report: Path | None = None,
    sources: dict | None = None,
) -> dict[str, Any]:
    t0 = time.monotonic()
    progress = Progress()
    rng = np.random.default_rng(cfg.seed)
    if not series:
        raise FitError("no instances in the data")
    progress("step", f"{len(series)} instances")
    step = infer_step(series)
    progress("step", f"{step:g} s", 1)
    if cfg.spec is None:
        cfg = dataclasses.replace(cfg, spec=BaselineSpec.for_step(step))

    attach_many(
        series,
        cfg.spec,
        cfg.workers,
        lambda k, n: progress("baselines", f"{k}/{n} instances", k / n),
    )
    series, skipped = check(series, step, cfg)
    progress("checks", f"{len(series)} instances usable", 1)

    # -- split and subsample --------------------------------------------------------
    cuts = [int(len(s.times) * cfg.train_fraction) for s in series]
    tr_parts, va_parts = [], []
    per = max(cfg.window, cfg.max_train_windows // len(series))
    for s, a in zip(series, cuts, strict=True):
        b = int(a * (1 - cfg.val_fraction))
        tr_parts += _chunks(s.slice(0, b), per, cfg, rng)
        va_parts += _chunks(s.slice(b, a), max(cfg.window, per // 4), cfg, rng)
    calib = [s.slice(a, len(s.times)) for s, a in zip(series, cuts, strict=True)]
    h_train = sum(int(healthy_mask(s.slice(0, a)).sum()) for s, a in zip(series, cuts, strict=True))
    h_cal = sum(int(healthy_mask(c).sum()) for c in calib)
    n_train_windows = sum(int(_pure(p, cfg.window).sum()) for p in tr_parts)
    if n_train_windows < 10 or not any(_pure(p, cfg.window).any() for p in va_parts):
        raise FitError(
            f"no healthy stretch: only {n_train_windows} healthy training windows of {cfg.window} "
            "steps in the first part of the timelines; fit on a longer or healthier range"
        )

    # -- train --------------------------------------------------------------------------
    from .detector import AnomalyDetector

    det = AnomalyDetector(kind="autoencoder", window=cfg.window, seed=cfg.seed)
    if cfg.base_model:
        p = Path(cfg.base_model)
        p = p / "keras" if (p / "keras" / "detector.json").is_file() else p
        try:
            det.import_weights(p)
        except (FileNotFoundError, ValueError) as exc:
            raise FitError(f"--base-model {cfg.base_model}: {exc}") from exc
        if det.kind != "autoencoder" or det.window != cfg.window:
            raise FitError(
                f"--base-model {cfg.base_model} is a {det.kind} with window {det.window}; fit "
                f"needs an autoencoder with window {cfg.window} (or train fresh)"
            )
    else:
        det.initialize_new_weights()
    progress(
        "train",
        f"{n_train_windows} healthy windows from {len(tr_parts)} chunks "
        f"({h_train * step / 3600:.1f} healthy instance-hours available), {cfg.epochs} epochs",
    )
    det.train(
        number_of_iterations=cfg.epochs, batch_size=cfg.batch_size, data=tr_parts,
        validation=va_parts,
    )  # fmt: skip
    epochs_run = len(det.history.get("loss", []))
    progress(
        "train",
        f"{epochs_run} epochs, val loss {min(det.history.get('val_loss', [math.nan])):.4f}",
        1,
    )

    # -- calibrate ----------------------------------------------------------------------
    raws = []
    for g in range(0, len(calib), 16):
        raws += score_steps(det, calib[g : g + 16])
        progress(
            "calibrate",
            f"scored {min(g + 16, len(calib))}/{len(calib)} instances",
            (g + 16) / len(calib),
        )
    pure = [_pure(c, cfg.window) for c in calib]
    healthy_scores = np.concatenate(
        [r[p & np.isfinite(r)] for r, p in zip(raws, pure, strict=True)]
    ) if raws else np.zeros(0)  # fmt: skip
    if len(healthy_scores) < 20:
        raise FitError(
            f"no healthy stretch: only {len(healthy_scores)} healthy scored windows in the "
            "calibration part (the last 30% of each timeline); fit on a longer or healthier range"
        )
    tail = evt.fit_tail(healthy_scores, cfg.tail_quantile)
    thr, how, expected = evt.threshold_for_budget(tail, cfg.budget_per_day, step)
    thr = float(max(thr, 1e-9))
    exceed = alarms = 0
    for r, p in zip(raws, pure, strict=True):
        fire = np.where(np.isfinite(r), r, -np.inf) >= thr
        exceed += int((fire & p).sum())
        alarms += int((_alarm_starts(fire, cfg.debounce_steps) & p).sum())
    cal_days = len(healthy_scores) * step / evt.SECONDS_PER_DAY
    progress(
        "calibrate",
        f"threshold {thr:.4g} ({how}; tail {tail.method}, {tail.n_exceed} exceedances), expected "
        f"{'n/a' if expected is None else format(expected, '.3g')} alarms/instance/day",
        1,
    )

    # -- recall: injected lab signatures, and labelled episodes -----------------------------
    injected = _inject_recall(det, series, cuts, thr, step, cfg, rng, progress)
    labelled = _label_recall(det, series, thr, cfg)

    # -- export -------------------------------------------------------------------------
    det.add_rule("evt_budget", thr, budget_per_day=cfg.budget_per_day, method=how)
    summary: dict[str, Any] = {
        "step_seconds": step,
        "instances": [s.instance for s in series],
        "skipped": skipped,
        "budget_per_day": cfg.budget_per_day,
        "alarm_counting": (
            "expected: every healthy step whose score exceeds the threshold counts as one alarm "
            "(an upper bound for any debounce); empirical: starts of debounced runs "
            f"({cfg.debounce_steps} consecutive steps) on healthy calibration windows"
        ),
        "debounce_steps": cfg.debounce_steps,
        "window": cfg.window,
        "train_fraction": cfg.train_fraction,
        "healthy_instance_hours": {
            "train_part": h_train * step / 3600,
            "calibration": h_cal * step / 3600,
            "train_windows_used": n_train_windows,
            "train_windows_hours": n_train_windows * step / 3600,
            "calibration_windows": int(len(healthy_scores)),
        },  # fmt: skip
        "epochs": {"max": cfg.epochs, "run": epochs_run, "base_model": str(cfg.base_model or "")},
        "threshold": thr,
        "threshold_method": how,
        "score_mode": det.score_mode,
        "per_step_probability": evt.per_step_probability(cfg.budget_per_day, step),
        # > 1: the budget asks for a rate rarer than 1 in the calibration sample, so the
        # threshold rests on the tail model (or the fallback rule), not on observed scores.
        "extrapolation_factor": 1.0
        / (evt.per_step_probability(cfg.budget_per_day, step) * len(healthy_scores)),
        "tail": tail.to_dict(),
        "expected_alarms_per_instance_day": expected,
        "calibration": {
            "healthy_instance_days": cal_days,
            "exceeding_steps": exceed,
            "alarms": alarms,
            "alarms_per_instance_day": alarms / cal_days if cal_days else None,
            "exceeding_steps_per_instance_day": exceed / cal_days if cal_days else None,
        },  # fmt: skip
        "injected": injected,
        "labelled": labelled,
        "baseline_spec": cfg.spec.to_dict(),
        "sources": sources or {},
    }
    progress("export", str(out))
    sample = det.windows(calib[:4]).X[:64]
    det.export(
        out,
        sample=sample if len(sample) else None,
        debounce_steps=cfg.debounce_steps,
        clear_steps=clear_steps(step),
        info={"fit": _slim(summary)},
    )
    det.save(out / "keras")
    summary["bundle"] = str(out)
    summary["seconds"] = time.monotonic() - t0
    if report is not None:
        from .fit_report import write_report

        progress("report", str(report))
        write_report(summary, tail, healthy_scores, report)
    progress("report", f"done in {summary['seconds']:.0f}s", 1)
    return summary


def _slim(summary: dict) -> dict:
    keys = ("step_seconds", "budget_per_day", "threshold", "threshold_method", "tail",
            "expected_alarms_per_instance_day", "calibration", "healthy_instance_hours", "debounce_steps")  # fmt: skip
    out = {k: summary[k] for k in keys}
    out["injected_recall"] = {
        c: v["recall"] for c, v in (summary["injected"] or {}).get("per_class", {}).items()
    }
    # what `rules generate` states beside the rules (a fit bundle has no test split)
    out["injected_median_delay_steps"] = (summary["injected"] or {}).get("median_delay_steps")
    out["instances"] = len(summary["instances"])
    return out


def _inject_recall(det, series, cuts, thr, step, cfg, rng, progress) -> dict[str, Any]:
    labs = [Path(p) for p in cfg.lab_datasets if (Path(p) / "samples.parquet").is_file()]
    if not labs:
        progress("inject", "no lab datasets found; recall not estimated", 1)
        return {"note": "no lab dataset found", "per_class": {}, "episodes": []}
    sigs: list[inject.Signature] = []
    for p in labs:
        lab_series = load_series([p])
        sigs += inject.signatures(lab_series, cfg.spec, origin=f"{p.name}:")
    stretch = inject.stretch_factor(step, cfg.inject_min_steps)
    sigs = [inject.resample(s, step, cfg.inject_min_steps) for s in sigs]
    progress("inject", f"{len(sigs)} lab signatures, stretched x{stretch:g}", 0.2)
    # Copies of the calibration parts, with enough history before them for a warm baseline.
    spec = cfg.spec
    pre = int(
        math.ceil((spec.warmup_seconds + spec.capacity * max(spec.sample_every, step)) / step)
    )
    pre += cfg.window
    order = list(rng.permutation(len(series)))
    chosen, healthy, slots = [], [], 0
    need = max(len(sigs) * cfg.inject_rounds, 1)
    slot = inject.slot_steps(int(np.median([len(s.z) for s in sigs])), cfg.window)[1]
    for i in order:
        # Spread over several instances (the fleet's variety), up to max_inject_instances.
        if len(chosen) >= cfg.max_inject_instances or (slots >= need and len(chosen) >= 4):
            break
        s, a = series[i], cuts[i]
        a0 = max(0, a - pre)
        c = s.slice(a0, len(s.times))
        h = healthy_mask(c)
        h[: a - a0] = False  # inject only into the calibration part
        chosen.append(c)
        healthy.append(h)
        slots += int(h.sum()) // slot
    placements = inject.plan(healthy, sigs, cfg.window, rng, cfg.inject_rounds)
    if not placements:
        progress("inject", "no healthy room in the calibration data; recall not estimated", 1)
        return {
            "note": "no healthy stretch long enough in calibration",
            "per_class": {},
            "episodes": [],
        }
    copies, inj = inject.inject_all(
        chosen, sigs, placements, spec,
        attach=lambda ss: attach_many(ss, spec, cfg.workers),
    )  # fmt: skip
    progress("inject", f"{len(inj)} episodes into {len(copies)} instances; scoring", 0.6)
    rows = inject.detections(det, copies, inj, thr, cfg.debounce_steps)
    per_class = inject.recall_by_class(rows)
    progress(
        "inject", f"recall {inject.fmt_pct(inject.overall(rows))} over {len(rows)} episodes", 1
    )
    return {
        "lab_datasets": [str(p) for p in labs],
        "signatures": len(sigs),
        "stretch_factor": stretch,
        "min_steps": cfg.inject_min_steps,
        "instances": len(copies),
        "recall": inject.overall(rows),
        "median_delay_steps": inject.median_delay(rows),
        "per_class": per_class,
        "episodes": rows,
        "note": (
            f"each lab episode (2 s step) stretched x{stretch:g} in time (a 30 s episode lasts >= "
            f"{cfg.inject_min_steps} steps) and added as z x the fleet's spread; detected = the "
            f"debounced decision ({cfg.debounce_steps} step(s)) fires inside the episode"
        ),
    }


def _label_recall(det, series: list[Series], thr: float, cfg: FitConfig) -> dict[str, Any]:
    """Recall on the data's own anomalous labels (lab labels or engineers' label files)."""
    from .evaluate import debounce

    rows = []
    for s in series:
        eps = episodes(s.labels, s.times)
        if not eps:
            continue
        raw = score_steps(det, [s])[0]
        fire = debounce(np.where(np.isfinite(raw), raw, -np.inf) >= thr, cfg.debounce_steps)
        for cls, i, j in eps:
            hits = np.flatnonzero(fire[i:j])
            rows.append({
                "class": cls, "instance": s.instance, "steps": j - i,
                "scored_steps": int(np.isfinite(raw[i:j]).sum()),
                "detected": bool(len(hits)), "delay_steps": int(hits[0]) if len(hits) else None,
            })  # fmt: skip
    rows = [r for r in rows if r["scored_steps"] > 0]
    if not rows:
        return {}
    return {
        "recall": inject.overall(rows), "per_class": inject.recall_by_class(rows),
        "episodes": len(rows),
        "note": "episodes with at least one scored step; detected = the debounced decision fires inside",
    }  # fmt: skip


# -- the command ------------------------------------------------------------------------


def collect_dataset(args) -> Any:
    """--prometheus: a dataset straight from the query API (collect.py's client and auth)."""
    from . import collect as col

    try:
        api, start, end = col.api_from_args(args)
    except ValueError as exc:
        raise FitError(str(exc)) from exc
    try:
        return col.collect(api, args.selector, start, end, args.step)
    except col.CollectError as exc:
        raise FitError(str(exc)) from exc


def run(args) -> dict[str, Any]:
    """The CLI's handler body: inputs -> series -> fit; FitError for anything user-fixable."""
    from .dataset import DatasetError

    if bool(args.dataset) == bool(args.prometheus):
        raise FitError("give either --dataset DIR (repeatable) or --prometheus URL --start --end")
    if args.budget_per_day <= 0:
        raise FitError("--budget-per-day must be positive")
    labels = [args.labels] if args.labels else []
    try:
        if args.prometheus:
            if not (args.start and args.end):
                raise FitError("--prometheus needs --start and --end")
            log.info("fit: collecting %s from %s to %s", args.prometheus, args.start, args.end)
            ds = collect_dataset(args)
            if args.collect_out:
                from . import dataset as ds_mod

                ds_mod.write(ds, args.collect_out)
            series = load_series([ds], labels)
            sources = {
                "prometheus": args.prometheus,
                "start": args.start,
                "end": args.end,
                "step": args.step,
            }
        else:
            series = load_series(list(args.dataset), labels)
            sources = {"datasets": [str(p) for p in args.dataset]}
    except (DatasetError, FileNotFoundError) as exc:
        raise FitError(str(exc)) from exc
    sources["label_file"] = str(args.labels or "")
    cfg = FitConfig(
        budget_per_day=args.budget_per_day, window=args.window, epochs=args.epochs,
        min_hours=args.min_hours, base_model=args.base_model, seed=args.seed,
        max_train_windows=args.max_train_windows, debounce_steps=args.debounce,
    )  # fmt: skip
    summary = fit(series, cfg, args.out, args.report, sources)
    print(f"bundle: {args.out}")
    if args.report:
        print(f"report: {args.report / 'fit-report.md'}")
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("step_seconds", "threshold", "expected_alarms_per_instance_day")
            }
        )
    )
    return summary
