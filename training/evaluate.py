"""Scoring a detector honestly: point-wise and per-episode, delays, false alarms per hour.

Alarms are what an operator sees: runs of consecutive positive windows (after `debounce`
consecutive positives, like a rule's `for:`). An alarm that starts outside every anomalous
episode (plus a short grace after its end) is a false alarm.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .series import NORMAL, episodes


def best_f1_threshold(raw: np.ndarray, y: np.ndarray) -> float:
    """Threshold maximising point-wise F1 on (validation) scores; ties go to the higher one."""
    raw = np.asarray(raw, float)
    if y.sum() == 0 or y.sum() == len(y):
        return float(np.quantile(raw, 0.999)) if len(raw) else 1.0
    cands = np.unique(np.quantile(raw, np.linspace(0.5, 0.9995, 400)))
    f1s = [f1_at(raw, y, t) for t in cands]
    best = int(np.argmax(np.asarray(f1s) + 1e-9 * np.arange(len(f1s))))
    return float(max(cands[best], 1e-9))


def f1_at(raw: np.ndarray, y: np.ndarray, t: float) -> float:
    p = raw >= t
    tp = float((p & (y > 0)).sum())
    fp = float((p & (y == 0)).sum())
    fn = float((~p & (y > 0)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def binary_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    tp = int((pred & (y > 0)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y > 0)).sum())
    tn = int((~pred & (y == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "precision": prec,
        "recall": rec,
        "f1": f1,
    }


def debounce(pred: np.ndarray, k: int) -> np.ndarray:
    """True from the k-th consecutive positive on (a rule's `for:` of k-1 steps)."""
    pred = np.asarray(pred, bool)
    if k <= 1:
        return pred.copy()
    c = np.cumsum(pred)
    run = c - np.maximum.accumulate(np.where(pred, 0, c))  # positives since the last negative
    return run >= k


SEGMENT_GAP_SECONDS = 60.0  # as series.episodes: a longer gap starts a new timeline
# An episode counts for episode recall and delay only when at least this many of its steps
# were scored: the detectors are allowed 3 steps of delay, and a starved CoreDNS that answers
# one scrape in a minute leaves a 1-step run that no debounced detector (nor a rule with
# `for:`) can alarm on; in production the target-down meta-alert covers it. Such runs still
# count point-wise, and how many were set aside is reported (`short_episodes`).
MIN_EPISODE_STEPS = 3


def _groups(instances: np.ndarray, times: np.ndarray):
    """Each instance's windows in time order, cut where time jumps by more than a minute:
    two recordings (datasets) may reuse instance names, and an alarm or a debounce run must
    not carry from the end of one into the start of the next."""
    for inst in np.unique(instances):
        idx = np.flatnonzero(instances == inst)
        idx = idx[np.argsort(times[idx], kind="stable")]
        cuts = np.flatnonzero(np.diff(times[idx]) > SEGMENT_GAP_SECONDS) + 1
        for part in np.split(idx, cuts):
            yield inst, part


def evaluate_decisions(
    times: np.ndarray,
    instances: np.ndarray,
    labels: np.ndarray,
    alarm: np.ndarray,
    step: float,
    grace_steps: int = 5,
    aftermath_steps: int = 0,
) -> dict[str, Any]:
    """All figures for one set of decisions (model or rules) on the same windows.

    With `aftermath_steps`, false alarms that start within that many steps after an episode
    ended are also counted apart (`aftermath_alarms`), and the rest (`steady_false_alarms`) per
    hour of healthy traffic outside those stretches: a recording with a fault every minute is
    mostly aftermath, a cluster's day is mostly steady.
    """
    y = (labels != NORMAL).astype(int)
    out: dict[str, Any] = {"pointwise": binary_metrics(alarm, y)}
    per_class: dict[str, dict[str, Any]] = {}
    false_alarms = aftermath_alarms = 0
    normal_steps = steady_steps = 0
    short_episodes = already_alarmed = 0
    for _inst, idx in _groups(instances, times):
        lab, t, a = labels[idx], times[idx], alarm[idx]
        eps = episodes(lab, t)
        covered = np.zeros(len(idx), bool)
        after = np.zeros(len(idx), bool)
        for cls, i, j in eps:
            covered[i : min(len(idx), j + grace_steps)] = True
            after[j : min(len(idx), j + aftermath_steps)] = True
            c = per_class.setdefault(cls, {"episodes": 0, "detected": 0, "delays_steps": []})
            if j - i < MIN_EPISODE_STEPS:
                short_episodes += 1
                continue
            hits = np.flatnonzero(a[i:j])
            c["episodes"] += 1
            already_alarmed += int(i > 0 and a[i - 1])  # detected, but no new alarm onset
            if len(hits):
                c["detected"] += 1
                c["delays_steps"].append(int(hits[0]))
        starts = np.flatnonzero(a & ~np.concatenate([[False], a[:-1]]))
        false_alarms += int((~covered[starts]).sum())
        aftermath_alarms += int((~covered[starts] & after[starts]).sum())
        normal_steps += int((lab == NORMAL).sum())
        steady_steps += int(((lab == NORMAL) & ~after).sum())
    for cls, c in per_class.items():
        mask = labels == cls
        c["recall_episode"] = c["detected"] / c["episodes"] if c["episodes"] else None
        c["recall_pointwise"] = float(alarm[mask].mean()) if mask.any() else 0.0
        c["median_delay_steps"] = float(np.median(c["delays_steps"])) if c["delays_steps"] else None
    normal_hours = normal_steps * step / 3600
    out["per_class"] = dict(sorted(per_class.items()))
    n_eps = sum(c["episodes"] for c in per_class.values())
    out["episode_recall"] = sum(c["detected"] for c in per_class.values()) / n_eps if n_eps else 0.0
    delays = [d for c in per_class.values() for d in c["delays_steps"]]
    out["median_delay_steps"] = float(np.median(delays)) if delays else None
    out["short_episodes"] = short_episodes
    out["episodes_while_alarmed"] = already_alarmed
    out["false_alarms"] = false_alarms
    out["normal_hours"] = normal_hours
    out["false_alarms_per_hour"] = false_alarms / normal_hours if normal_hours else None
    if aftermath_steps:
        steady_hours = steady_steps * step / 3600
        out["aftermath_steps"] = aftermath_steps
        out["aftermath_alarms"] = aftermath_alarms
        out["steady_false_alarms"] = false_alarms - aftermath_alarms
        out["steady_normal_hours"] = steady_hours
    return out


class FalseAlarmCounter:
    """False alarms only, fast, for searching thresholds x debounces over many windows."""

    def __init__(
        self, times: np.ndarray, instances: np.ndarray, labels: np.ndarray, step: float,
        grace_steps: int = 5,
    ) -> None:  # fmt: skip
        self.parts = []
        for _inst, idx in _groups(instances, times):
            covered = np.zeros(len(idx), bool)
            for _cls, i, j in episodes(labels[idx], times[idx]):
                covered[i : min(len(idx), j + grace_steps)] = True
            self.parts.append((idx, covered))
        self.normal_hours = float((labels == NORMAL).sum()) * step / 3600

    def count(self, alarm: np.ndarray, k: int = 1) -> int:
        n = 0
        for idx, covered in self.parts:
            a = debounce(alarm[idx], k)
            starts = a & ~np.concatenate([[False], a[:-1]])
            n += int((starts & ~covered).sum())
        return n


def evaluate_predictions(pred, step: float, debounce_k: int = 1) -> dict[str, Any]:
    alarm = debounce_by_instance(pred.is_anomaly, pred.instances, pred.times, debounce_k)
    res = evaluate_decisions(pred.times, pred.instances, pred.labels, alarm, step)
    res["type_confusion"] = type_confusion(pred.labels, pred.anomaly_type, alarm)
    return res


def debounce_by_instance(
    alarm: np.ndarray, instances: np.ndarray, times: np.ndarray, k: int
) -> np.ndarray:
    out = np.zeros_like(alarm, dtype=bool)
    for _inst, idx in _groups(instances, times):
        out[idx] = debounce(alarm[idx].astype(bool), k)
    return out


def type_confusion(
    labels: np.ndarray, types: np.ndarray, alarm: np.ndarray
) -> dict[str, dict[str, int]]:
    """True class -> predicted type counts, over anomalous windows the detector flagged."""
    out: dict[str, dict[str, int]] = {}
    for lab, ty in zip(
        labels[alarm & (labels != NORMAL)], types[alarm & (labels != NORMAL)], strict=True
    ):
        row = out.setdefault(str(lab), {})
        row[str(ty)] = row.get(str(ty), 0) + 1
    return dict(sorted(out.items()))
