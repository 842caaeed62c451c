"""Classic thresholds learned from datasets' normal traffic, and rule files scored on their test
split (`coredns-anomaly thresholds learn` / `thresholds evaluate`).

Signal values come from the real Prometheus (the dataset backfilled with promtool, the exact
PromQL of the rule, contracts/signals.py, queried with query_range), so a learned threshold
means what the rule means: same rate windows, extrapolation, histogram_quantile. Only normal
steps of the *train* part (series.time_split, the split the models use) feed a threshold; the
`for:` is chosen on the validation part with the pipeline's objective; the test part is touched
only by `evaluate_rules`, through evaluate_alert_rules, exactly as the coredns-mixin baseline
and the models are scored.

What is learned is written as thresholds.json (contracts/thresholds.py); the rules generator
renders it (`coredns-anomaly rules classic --thresholds`) and imports nothing from here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coredns_anomaly.contracts.signals import SIGNALS, Signal
from coredns_anomaly.exporter.promclient import PrometheusAPI
from coredns_anomaly.lab import prometheus

from .. import dataset as ds_mod
from ..detector import as_series
from ..evaluate import evaluate_decisions
from ..pipeline import HELD_OUT_DEFAULT, VAL_NOVEL_DEFAULT, objective, split_report
from ..series import (
    NORMAL,
    TEST_FRACTION,
    TRAIN_FRACTION,
    Scaler,
    Series,
    Windows,
    make_windows,
    time_split,
)
from .promql import (
    JOB,
    apply_for,
    backfill,
    evaluate_alert_rules,
    parse_duration,
    query_range_series,
)

log = logging.getLogger(__name__)

QUANTILE = 0.999  # of normal train values: a robust "highest normal" that ignores a few blips
MARGIN = 0.1  # headroom above it, as a share of the normal spread (quantile - median)
MIN_NORMAL_STEPS = 300  # per signal, over all instances of all datasets
MIN_NORMAL_MINUTES = 10.0  # of normal train traffic in all, below which thresholds are guesses
FOR_CANDIDATES = ("0s", "10s", "30s", "1m")


class LearnError(ValueError):
    """The datasets cannot support learned thresholds; the message says why."""


@dataclass
class Values:
    """One signal on one instance: the value at each scrape time (NaN where absent)."""

    times: np.ndarray
    values: np.ndarray


@dataclass
class Part:
    """One instance of one dataset, for choosing the `for:` on its validation part."""

    key: str  # dataset path:instance (the shipped datasets reuse instance names)
    times: np.ndarray
    labels: np.ndarray
    values: dict[str, Values]  # per signal
    train_end: int  # index where validation starts
    val_end: int  # index where test starts
    step: float


def query_signals(
    ds: ds_mod.Dataset, signals: tuple[Signal, ...], window: str, job: str = JOB
) -> dict[str, dict[str, Values]]:
    """{instance: {signal name: Values}} for every scrape time of the dataset, via Prometheus."""
    prometheus.binaries()  # FileNotFoundError saying how to install them, before any work
    step = ds.step
    tmp = Path(tempfile.mkdtemp(prefix="thresholds-learn-"))
    out: dict[str, dict[str, Values]] = {}
    try:
        tsdb = backfill(ds, tmp)
        ts = ds.samples["timestamp"].to_numpy(float)
        t0, t1 = float(ts.min()), float(ts.max())
        n = int(np.rint((t1 - t0) / step)) + 1
        start = t0 + step / 2  # as evaluate_alert_rules: evaluation k sees scrape k, never k+1
        up = ds.samples[ds.samples["name"] == "up"].sort_values("timestamp")
        times = {str(i): df["timestamp"].to_numpy(float) for i, df in up.groupby("instance")}
        is_up = {str(i): df["value"].to_numpy(float) > 0 for i, df in up.groupby("instance")}
        with prometheus.serving(tsdb, tmp) as base, PrometheusAPI(base, timeout=300) as api:
            for sig in signals:
                grid = _signal_grid(api, sig.expr(job, window), start, n, step)
                for inst, t in times.items():
                    at = np.clip(np.rint((t - t0) / step).astype(int), 0, n - 1)
                    vals = grid.get(inst, np.full(n, np.nan))[at]
                    if sig.absent_is_zero:
                        vals = np.where(np.isnan(vals) & is_up[inst], 0.0, vals)
                    out.setdefault(inst, {})[sig.name] = Values(t, vals)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _signal_grid(api: PrometheusAPI, expr: str, start: float, n: int, step: float):
    """{instance: value per grid step} of one expression (several series per instance: max)."""
    out: dict[str, np.ndarray] = {}
    for labels, idx, values in query_range_series(api, expr, start, n, step):
        arr = out.setdefault(labels.get("instance", ""), np.full(n, np.nan))
        arr[idx] = np.fmax(arr[idx], values)
    return out


def threshold(normal: np.ndarray) -> float:
    """The highest normal value, robustly: quantile + a margin of the normal spread.

    A quantile rather than the maximum, because "normal" minutes in real data include a few
    unlabelled blips; the margin keeps a threshold from sitting exactly on the normal edge.
    """
    v = normal[np.isfinite(normal)]
    hi = float(np.quantile(v, QUANTILE))
    med = float(np.median(v))
    return hi + MARGIN * max(hi - med, 0.0)


def normal_train_steps(
    ds: ds_mod.Dataset, instance: str, times: np.ndarray, labels: np.ndarray, window_s: float
) -> tuple[np.ndarray, int, int]:
    """Which steps of the train part may feed a threshold (normal, and their rate window clear
    of every episode), and where the train and validation parts end."""
    a, b = split_bounds(labels)
    ok = (labels[:a] == NORMAL) & ~after_anomaly(ds, instance, times[:a], window_s + ds.step)
    return ok, a, b


def _too_short(minutes: float, window: str) -> LearnError:
    return LearnError(
        f"only {minutes:.1f} minutes of normal traffic in the train part (first "
        f"{TRAIN_FRACTION:.0%} of each instance's timeline, minus the {window} rate window after "
        f"each episode); need at least {MIN_NORMAL_MINUTES:g} to learn thresholds: record "
        "longer, or add datasets"
    )


def learn(paths: list[Path], window: str = "1m") -> dict[str, Any]:
    """thresholds.json's document: thresholds for every signal from the normal train steps of
    the datasets, and one `for:` chosen on the validation part (never the test part).

    Raises LearnError when the normal train traffic is too short to say what is normal.
    """
    try:
        window_s = parse_duration(window)
    except ValueError as exc:
        raise LearnError(f"--rate-window: {exc}") from None
    loaded = []
    for path in paths:
        try:
            loaded.append(ds_mod.load(path))
        except (ds_mod.DatasetError, FileNotFoundError, OSError) as exc:
            raise LearnError(f"{path}: {exc}") from None
    _check_size(loaded, window, window_s)
    normal: dict[str, list[np.ndarray]] = {s.name: [] for s in SIGNALS}
    normal_seconds = 0.0
    provenance, val_parts = [], []
    for path, ds in zip(paths, loaded, strict=True):
        for inst, per_sig in query_signals(ds, SIGNALS, window).items():
            t = next(iter(per_sig.values())).times
            labels = ds.label_at(inst, t)
            is_normal, a, b = normal_train_steps(ds, inst, t, labels, window_s)
            normal_seconds += float(is_normal.sum()) * ds.step
            for name, v in per_sig.items():
                normal[name].append(v.values[:a][is_normal])
            val_parts.append(Part(f"{path}:{inst}", t, labels, per_sig, a, b, ds.step))
        provenance.append(
            {"path": str(path), "coredns_version": ds.meta.get("coredns_version"),
             "seed": ds.meta.get("seed"), "step_seconds": ds.step, "instances": ds.instances}
        )  # fmt: skip
    minutes = normal_seconds / 60
    if minutes < MIN_NORMAL_MINUTES:
        raise _too_short(minutes, window)
    out = {sig.name: _signal_entry(sig, normal[sig.name]) for sig in SIGNALS}
    hold, val = choose_for(val_parts, out)
    return {
        "window": window,
        "for": hold,
        "method": f"threshold: quantile {QUANTILE} of normal train values + {MARGIN} x "
        "(quantile - median); for: best validation objective among " + ", ".join(FOR_CANDIDATES),
        "normal_train_minutes": round(minutes, 1),
        "validation": val,
        "datasets": provenance,
        "signals": out,
    }


def _signal_entry(sig: Signal, parts: list[np.ndarray]) -> dict[str, Any]:
    v = np.concatenate(parts) if parts else np.array([])
    v = v[np.isfinite(v)]
    if len(v) < MIN_NORMAL_STEPS:
        raise LearnError(
            f"signal {sig.name}: only {len(v)} normal train steps with a value (need "
            f"{MIN_NORMAL_STEPS}); do the datasets have the metrics behind {sig.feature}?"
        )
    entry: dict[str, Any] = {
        "threshold": _round(threshold(v)),
        "normal_median": _round(float(np.median(v))),
        "normal_q999": _round(float(np.quantile(v, QUANTILE))),
        "normal_max": _round(float(v.max())),
        "normal_steps": len(v),
    }
    if entry["threshold"] >= sig.ceiling:
        entry["skipped"] = (
            f"normal traffic already reaches {sig.ceiling:g}: no threshold can separate it"
        )
    return entry


def _check_size(datasets: list[ds_mod.Dataset], window: str, window_s: float) -> None:
    """Refuse, before starting Prometheus, datasets whose normal train traffic is too short."""
    seconds = 0.0
    for ds in datasets:
        up = ds.samples[ds.samples["name"] == "up"]
        for inst, df in up.groupby("instance", observed=True):
            t = np.sort(df["timestamp"].to_numpy(float))
            ok, _, _ = normal_train_steps(ds, str(inst), t, ds.label_at(str(inst), t), window_s)
            seconds += float(ok.sum()) * ds.step
    if seconds / 60 < MIN_NORMAL_MINUTES:
        raise _too_short(seconds / 60, window)


def choose_for(parts: list[Part], learned: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The `for:` with the best validation objective (the pipeline's own, `objective`), using
    Prometheus's own state machine (apply_for)."""
    best: tuple[float, str, dict[str, Any]] | None = None
    for hold in FOR_CANDIDATES:
        cols: dict[str, list[np.ndarray]] = {"t": [], "i": [], "y": [], "a": []}
        for p in parts:
            alarm = np.zeros(len(p.times), dtype=bool)
            for name, entry in learned.items():
                if "skipped" in entry:
                    continue
                v = np.nan_to_num(p.values[name].values, nan=-np.inf)
                alarm |= apply_for(v > entry["threshold"], p.times, parse_duration(hold))
            a, b = p.train_end, p.val_end
            cols["t"].append(p.times[a:b])
            cols["i"].append(np.full(b - a, p.key, dtype=object))
            cols["y"].append(p.labels[a:b])
            cols["a"].append(alarm[a:b])
        t, i, y, alarm = (np.concatenate(cols[k]) for k in ("t", "i", "y", "a"))
        res = evaluate_decisions(t, i, y, alarm, parts[0].step)
        score = objective(res)
        summary = {
            "for": hold, "objective": round(score, 4), "episode_recall": round(res["episode_recall"], 4),
            "f1": round(res["pointwise"]["f1"], 4), "false_alarms": res["false_alarms"],
        }  # fmt: skip
        if best is None or score > best[0] + 1e-9:
            best = (score, hold, summary)
    return best[1], best[2]


def after_anomaly(ds: Any, instance: str, times: np.ndarray, seconds: float) -> np.ndarray:
    """Steps whose rate window still reaches into an anomalous episode.

    Labelled normal, but a 1-minute rate there still averages the fault in: learning from
    them would set every threshold at the tail of the faults it should catch.
    """
    out = np.zeros(len(times), dtype=bool)
    a = ds.anomalies()
    for inst, end, start in zip(a["instance"], a["end"], a["start"], strict=True):
        if inst in (instance, "*"):
            out |= (times >= start) & (times < end + seconds)
    return out


def split_bounds(labels: np.ndarray) -> tuple[int, int]:
    """Where an instance's train and validation parts end: time_split's, shared with the
    models (it moves a boundary out of an episode, so it needs the labels)."""
    n = len(labels)
    s = Series("x", np.arange(n, dtype=float), np.zeros((n, 1)), np.asarray(labels, object))
    split = time_split([s])
    a = len(split.train[0].times)
    return a, a + len(split.val[0].times)


def _round(x: float) -> float:
    """4 significant digits: stable across runs, readable in the rule file."""
    return float(f"{x:.4g}")


def evaluate_rules(
    paths: list[Path], rule_files: dict[str, Path], window: int
) -> dict[str, dict[str, Any]]:
    """Rule files scored on the test split exactly as `train` scores models and the mixin.

    Same windows (the model's window length over time_split's test part), alarms from
    evaluate_alert_rules (real Prometheus, per instance), figures from evaluate_decisions.
    Alarms are kept per dataset: the shipped datasets reuse instance names, so an instance name
    alone does not say which recording it is.
    """
    loaded = [ds_mod.load(p) for p in paths]
    parts, owner = [], []
    for k, ds in enumerate(loaded):
        split = time_split(as_series(ds))
        w = make_windows(split.test, window, Scaler.fit(split.train))
        parts.append(w)
        owner.append(np.full(len(w), k))
    te, owner_all = Windows.concat(parts), np.concatenate(owner)
    out = {}
    for name, rules_file in rule_files.items():
        alarm = np.zeros(len(te), dtype=bool)
        for k, ds in enumerate(loaded):
            mine = owner_all == k
            times = {
                inst: te.times[mine & (te.instances == inst)]
                for inst in ds.instances
                if (mine & (te.instances == inst)).any()
            }
            fired = evaluate_alert_rules(ds, rules_file, times)
            for inst, alerts in fired.items():
                idx = np.flatnonzero(mine & (te.instances == inst))
                for arr in alerts.values():
                    alarm[idx] |= np.asarray(arr, dtype=bool)
        res = evaluate_decisions(te.times, te.instances, te.labels, alarm, loaded[0].step)
        res["seen_vs_held_out"] = split_report(res, HELD_OUT_DEFAULT, VAL_NOVEL_DEFAULT)
        out[name] = res
    return out


def evaluation(paths: list[Path], rule_files: dict[str, Path], window: int) -> dict[str, Any]:
    """evaluation.json's document: each rule file's figures on the test split (the ones
    docs/rules.md compares with the models), and the setup they were measured on."""
    res = evaluate_rules(paths, rule_files, window)
    slim = {
        k: {
            "episode_recall": v["episode_recall"], "pointwise": v["pointwise"],
            "false_alarms": v["false_alarms"], "false_alarms_per_hour": v["false_alarms_per_hour"],
            "median_delay_steps": v["median_delay_steps"], "normal_hours": v["normal_hours"],
            "per_class": {c: {kk: pc[kk] for kk in ("episodes", "detected", "median_delay_steps")} for c, pc in v["per_class"].items()},
            "seen_vs_held_out": v["seen_vs_held_out"],
        }
        for k, v in res.items()
    }  # fmt: skip
    setup = {
        "datasets": [str(p) for p in paths],
        "window": window,
        "split": f"test (last {TEST_FRACTION:.0%})",
    }
    return {"setup": setup, **slim}
