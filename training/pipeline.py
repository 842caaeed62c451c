"""`coredns-anomaly train`, top to bottom: data -> splits -> search -> test -> select -> export.

1. Featurize every dataset (exporter's features), merge engineers' label files.
2. Split each instance's timeline in time order: train | validation | test; no window spans two
   splits. Held-out classes never appear in train or validation, and are scored on test only.
3. For each of the three models, a small grid (window length, filters) is trained on train and
   scored on validation; thresholds and debounce are chosen on validation too.
4. The best configuration of each model, and two baselines (PCA reconstruction error, the
   coredns-mixin rules evaluated by the real Prometheus), are scored once on test.
5. The model with the best validation objective is exported as the bundle; results.md and PNG
   plots are written. The test split never influences any choice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import dataset as ds_mod
from .detector import AnomalyDetector, Predictions, as_series
from .evaluate import (
    best_f1_threshold,
    debounce_by_instance,
    evaluate_decisions,
    evaluate_predictions,
)
from .export import json_default
from .series import Series, Split, make_windows, time_split

log = logging.getLogger(__name__)

HELD_OUT_DEFAULT = ("cache_thrash", "tcp_fallback")  # never in train or validation: test only
# Kept out of training but present in validation, so model choice and thresholds reward
# detecting a class the model never learnt (the held-out classes stay unseen until test).
VAL_NOVEL_DEFAULT = ("misconfig_refused",)
SEARCH = {"window": (8, 16, 32), "filters": (16, 32)}
QUICK_SEARCH = {"window": (16,), "filters": (16,)}  # smoke runs and tests


@dataclass
class Candidate:
    kind: str
    window: int
    filters: int
    val: dict[str, Any]
    objective: float
    seconds: float
    detector: AnomalyDetector = field(repr=False, default=None)
    debounce: int = 1


def objective(res: dict[str, Any], novel: tuple[str, ...] = ()) -> float:
    """Validation objective: the mean of point-wise F1, episode recall on classes the model was
    trained on, and episode recall on validation-novel classes (catching the unforeseen is the
    point of learning normal behaviour), minus 0.02 per false alarm."""
    pc = res["per_class"]

    def recall(classes):
        eps = sum(pc[c]["episodes"] for c in classes)
        return sum(pc[c]["detected"] for c in classes) / eps if eps else None

    seen_r = recall([c for c in pc if c not in novel])
    novel_r = recall([c for c in pc if c in novel])
    parts = [res["pointwise"]["f1"]] + [r for r in (seen_r, novel_r) if r is not None]
    return sum(parts) / len(parts) - 0.02 * res["false_alarms"]


def load_series(
    datasets: list[Path], label_files: list[Path], include_weak: bool = True
) -> tuple[list[Series], list[ds_mod.Dataset]]:
    series, loaded = [], []
    for path in datasets:
        ds = ds_mod.load(path)
        loaded.append(ds)
        series += as_series(ds, label_files, include_weak)
    return series, loaded


def choose_debounce(
    det: AnomalyDetector, pred: Predictions, novel: tuple[str, ...]
) -> tuple[int, dict[str, Any]]:
    best = None
    for k in (1, 2, 3):
        res = evaluate_predictions(pred, det.step_seconds or 1.0, k)
        if best is None or objective(res, novel) > objective(best[1], novel) + 1e-9:
            best = (k, res)
    return best


def search(
    split: Split,
    held_out: tuple[str, ...],
    epochs: int,
    batch: int,
    seed: int,
    progress,
    grid_spec: dict = SEARCH,
    val_novel: tuple[str, ...] = (),
) -> dict[str, list[Candidate]]:
    out: dict[str, list[Candidate]] = {}
    grid = [(w, f) for w in grid_spec["window"] for f in grid_spec["filters"]]
    total = 3 * len(grid)
    n = 0
    for kind in ("autoencoder", "classifier", "siamese"):
        for window, filters in grid:
            n += 1
            t0 = time.monotonic()
            det = AnomalyDetector(kind, window=window, filters=filters, seed=seed)
            det.train(
                epochs, batch, split.train, validation=split.val,
                exclude_classes=held_out + val_novel, val_exclude_classes=held_out,
            )  # fmt: skip
            va = make_windows(split.val, window, det.scaler, exclude_classes=held_out)
            k, res = choose_debounce(det, det.predict(va), val_novel)
            cand = Candidate(
                kind, window, filters, res, objective(res, val_novel), time.monotonic() - t0, det, k
            )
            out.setdefault(kind, []).append(cand)
            progress(
                f"[{n}/{total}] {kind} W={window} filters={filters}: val F1 {res['pointwise']['f1']:.3f}, episode recall {res['episode_recall']:.3f}, false alarms {res['false_alarms']}, {cand.seconds:.0f}s"
            )
    return out


def ensemble_candidate(
    best: dict[str, Candidate],
    split: Split,
    held_out: tuple[str, ...],
    val_novel: tuple[str, ...],
    progress,
) -> Candidate:
    """The best autoencoder OR the best supervised model, scored on validation like the rest."""
    from .ensemble import EnsembleDetector

    t0 = time.monotonic()
    sup = max((best[k] for k in ("classifier", "siamese")), key=lambda c: c.objective)
    ens = EnsembleDetector([best["autoencoder"].detector, sup.detector])
    va = make_windows(split.val, ens.window, ens.scaler, exclude_classes=held_out)
    ens.fit_decision(va)
    k, res = choose_debounce(ens, ens.predict(va), val_novel)
    cand = Candidate(
        "ensemble",
        ens.window,
        ens.filters,
        res,
        objective(res, val_novel),
        time.monotonic() - t0,
        ens,
        k,
    )
    progress(
        f"ensemble autoencoder | {sup.kind}: val F1 {res['pointwise']['f1']:.3f}, episode recall "
        f"{res['episode_recall']:.3f}, false alarms {res['false_alarms']}"
    )
    return cand


def pca_baseline(
    split: Split, held_out: tuple[str, ...], window: int, scaler, val_novel: tuple[str, ...] = ()
) -> dict[str, Any]:
    """PCA reconstruction error of the last step, fit on pure-normal training windows."""
    from sklearn.decomposition import PCA

    tr = make_windows(split.train, window, scaler, exclude_classes=held_out + val_novel)
    va = make_windows(split.val, window, scaler, exclude_classes=held_out)
    te = make_windows(split.test, window, scaler)
    pca = PCA(n_components=0.9, random_state=0).fit(tr.X[tr.pure][:, -1, :])

    def err(w):
        x = w.X[:, -1, :]
        return np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)

    t = best_f1_threshold(err(va), va.y)
    return {
        "windows": te,
        "alarm": err(te) >= t,
        "raw": err(te),
        "threshold": t,
        "components": int(pca.n_components_),
    }


def mixin_baseline(datasets: list[ds_mod.Dataset], te, rules_file: Path) -> np.ndarray | None:
    """Alarms of the coredns-mixin rules on the test windows, evaluated by real Prometheus."""
    try:
        from .baselines.promql import evaluate_alert_rules
    except ImportError:
        log.warning("mixin baseline unavailable (training.baselines missing)")
        return None
    alarm = np.zeros(len(te), bool)
    for ds in datasets:
        times = {
            inst: te.times[te.instances == inst]
            for inst in ds.instances
            if (te.instances == inst).any()
        }
        if not times:
            continue
        fired = evaluate_alert_rules(ds, rules_file, times)
        for inst, alerts in fired.items():
            idx = np.flatnonzero(te.instances == inst)
            any_alert = np.zeros(len(idx), bool)
            for arr in alerts.values():
                any_alert |= np.asarray(arr, bool)
            alarm[idx] = any_alert
    return alarm


def split_report(
    res_all: dict[str, Any], held_out: tuple[str, ...], val_novel: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Episode recall on test for trained classes, the validation-novel class(es) and the
    held-out classes (never seen before test)."""
    groups = {
        "seen": [c for c in res_all["per_class"] if c not in held_out + val_novel],
        "val_novel": [c for c in res_all["per_class"] if c in val_novel],
        "held_out": [c for c in res_all["per_class"] if c in held_out],
    }
    out = {}
    for name, classes in groups.items():
        eps = sum(res_all["per_class"][c]["episodes"] for c in classes)
        det = sum(res_all["per_class"][c]["detected"] for c in classes)
        out[name] = {"episodes": eps, "detected": det, "recall_episode": det / eps if eps else None}
    return out


def run(
    datasets: list[Path],
    bundle_out: Path,
    report_dir: Path,
    label_files: list[Path] | None = None,
    held_out: tuple[str, ...] = HELD_OUT_DEFAULT,
    epochs: int = 40,
    batch: int = 64,
    seed: int = 0,
    mixin_rules: Path | None = None,
    progress=print,
    quick: bool = False,
    val_novel: tuple[str, ...] = VAL_NOVEL_DEFAULT,
    include_weak: bool = True,
) -> dict[str, Any]:
    t_start = time.monotonic()
    series, loaded = load_series(datasets, label_files or [], include_weak)
    split = time_split(series)
    progress(
        f"data: {len(series)} series, {sum(len(s.times) for s in series)} steps; split train/val/test by time"
    )
    cands = search(
        split, held_out, epochs, batch, seed, progress, QUICK_SEARCH if quick else SEARCH, val_novel
    )
    best_per_kind = {k: max(v, key=lambda c: c.objective) for k, v in cands.items()}
    best_per_kind["ensemble"] = ensemble_candidate(
        best_per_kind, split, held_out, val_novel, progress
    )
    chosen = max(best_per_kind.values(), key=lambda c: c.objective)
    progress(
        f"chosen on validation: {chosen.kind} W={chosen.window} filters={chosen.filters} debounce={chosen.debounce}"
    )

    results: dict[str, Any] = {
        "models": {}, "baselines": {}, "held_out_classes": list(held_out), "val_novel_classes": list(val_novel),
    }  # fmt: skip
    test_preds: dict[str, Predictions] = {}
    for kind, c in best_per_kind.items():
        te = make_windows(split.test, c.window, c.detector.scaler)
        pred = c.detector.predict(te)
        test_preds[kind] = pred
        res = evaluate_predictions(pred, c.detector.step_seconds or 1.0, c.debounce)
        res["seen_vs_held_out"] = split_report(res, held_out, val_novel)
        res["config"] = {
            "window": c.window,
            "filters": c.filters,
            "debounce": c.debounce,
            "threshold": c.detector.threshold,
            "alternatives": c.detector.thresholds,
            "ae_score": c.detector.ae_score if kind == "autoencoder" else None,
        }
        res["validation_objective"] = c.objective
        res["rule"] = c.detector.rule
        res["threshold_rules"] = {}
        for name, r in c.detector.threshold_rules.items():
            raw = c.detector.raw_scores(r["score"], te.X)
            alarm = debounce_by_instance(raw >= r["threshold"], te.instances, te.times, c.debounce)
            rr = evaluate_decisions(
                te.times, te.instances, te.labels, alarm, c.detector.step_seconds or 1.0
            )
            res["threshold_rules"][name] = {
                "threshold": r["threshold"], "val_f1": r["val_f1"], "test_f1": rr["pointwise"]["f1"],
                "test_episode_recall": rr["episode_recall"], "test_false_alarms": rr["false_alarms"],
            }  # fmt: skip
        res["train_info"] = c.detector.train_info
        results["models"][kind] = res
    step = chosen.detector.step_seconds or 1.0
    pca = pca_baseline(split, held_out, chosen.window, chosen.detector.scaler, val_novel)
    w = pca["windows"]
    res = evaluate_decisions(w.times, w.instances, w.labels, pca["alarm"], step)
    res["seen_vs_held_out"] = split_report(res, held_out, val_novel)
    results["baselines"]["pca"] = res
    if mixin_rules and mixin_rules.is_file():
        te = make_windows(split.test, chosen.window, chosen.detector.scaler)
        alarm = mixin_baseline(loaded, te, mixin_rules)
        if alarm is not None:
            res = evaluate_decisions(te.times, te.instances, te.labels, alarm, step)
            res["seen_vs_held_out"] = split_report(res, held_out, val_novel)
            results["baselines"]["coredns_mixin"] = res
    results["search"] = [
        {"kind": c.kind, "window": c.window, "filters": c.filters, "debounce": c.debounce, "objective": c.objective, "val_f1": c.val["pointwise"]["f1"], "val_episode_recall": c.val["episode_recall"], "seconds": c.seconds}
        for v in cands.values() for c in v
    ]  # fmt: skip
    results["chosen"] = chosen.kind
    results["train_seconds"] = time.monotonic() - t_start
    results["datasets"] = [str(p) for p in datasets]
    results["label_files"] = [str(p) for p in (label_files or [])]

    det = chosen.detector
    sample = make_windows(split.val, chosen.window, det.scaler).X[
        :64
    ]  # real windows for the TFLite check
    det.export(
        bundle_out,
        sample=sample,
        extra=        {
            "decision_debounce_steps": chosen.debounce,
            "training_data": {"datasets": [{"path": str(p), "meta": {k: ds.meta.get(k) for k in ("coredns_version", "seed", "preset", "step_seconds", "recorded_from")}} for p, ds in zip(datasets, loaded, strict=True)], "label_files": results["label_files"]},
            "evaluation": {"test": _slim(results["models"][chosen.kind]), "held_out_classes": list(held_out)},
            "versions_coredns": sorted({str(ds.meta.get("coredns_version")) for ds in loaded}),
        },
    )  # fmt: skip

    det.save(bundle_out / "keras")  # the Keras weights, for import_weights and retraining
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results").mkdir(parents=True, exist_ok=True)
    (report_dir / "results" / "results.json").write_text(
        json.dumps(results, indent=1, default=json_default)
    )
    from .report import write_report

    write_report(
        results, {k: c for k, c in best_per_kind.items()}, test_preds, pca, report_dir, split
    )
    progress(f"done in {results['train_seconds']:.0f}s; bundle {bundle_out}, report {report_dir}")
    return results


def _slim(res: dict[str, Any]) -> dict[str, Any]:
    return {
        k: res[k]
        for k in (
            "pointwise",
            "episode_recall",
            "median_delay_steps",
            "false_alarms",
            "false_alarms_per_hour",
            "normal_hours",
            "seen_vs_held_out",
        )
        if k in res
    }
