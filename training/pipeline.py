"""`coredns-anomaly train`, top to bottom: data -> splits -> search -> test -> select -> export.

1. Featurize every dataset (exporter's features), merge engineers' label files.
2. Split each instance's timeline in time order: train | validation | test; no window spans two
   splits. Held-out classes never appear in train or validation, and are scored on test only.
3. For each of the three models, a small grid (window length, filters) is trained on train and
   scored on validation; thresholds and debounce are chosen on validation too.
4. The best configuration of each kind gets a leave-one-class-out check on validation: its
   recall on each class it was trained on, when it never saw that class.
5. The best configuration of each model, the ensemble, and two baselines (PCA reconstruction
   error, the coredns-mixin rules evaluated by the real Prometheus), are scored once on test.
6. The model with the best validation objective is exported as the bundle; results.md and PNG
   plots are written. The test split never influences any choice.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..contracts.bundle import clear_steps
from ..exporter.bundle import type_profile
from . import dataset as ds_mod
from .detector import AnomalyDetector, Predictions, as_series
from .evaluate import (
    best_f1_threshold,
    debounce_by_instance,
    evaluate_decisions,
    evaluate_predictions,
    f1_at,
)
from .export import json_default
from .series import Series, Split, Windows, make_windows, time_split

log = logging.getLogger(__name__)

HELD_OUT_DEFAULT = ("cache_thrash", "tcp_fallback")  # never in train or validation: test only
# Kept out of training but present in validation, so model choice and thresholds reward
# detecting a class the model never learnt (the held-out classes stay unseen until test).
VAL_NOVEL_DEFAULT = ("misconfig_refused",)
KINDS = ("autoencoder", "classifier", "siamese")
SEARCH = {"window": (8, 16, 32), "filters": (16, 32)}
QUICK_SEARCH = {"window": (16,), "filters": (16,)}  # smoke runs and tests


class OptionError(ValueError):
    """A `train` option that cannot be honoured; the message names it and the choices."""


@dataclass
class Candidate:
    kind: str
    window: int
    filters: int
    val: dict[str, Any]
    seconds: float
    detector: AnomalyDetector = field(repr=False, default=None)
    debounce: int = 1
    novel: tuple[str, ...] = ()
    unseen: dict[str, float] | None = None  # leave-one-class-out recall per class

    @property
    def unseen_mean(self) -> float | None:
        return float(np.mean(list(self.unseen.values()))) if self.unseen else None

    @property
    def objective(self) -> float:
        return objective(self.val, self.novel, self.unseen_mean)

    @property
    def rank(self) -> tuple[int, float]:
        return rank(self.val, self.novel, self.unseen_mean)


def objective(
    res: dict[str, Any], novel: tuple[str, ...] = (), unseen_recall: float | None = None
) -> float:
    """Validation objective: the mean of point-wise F1, episode recall on classes the model was
    trained on, episode recall on validation-novel classes (catching the unforeseen is the
    point of learning normal behaviour) and, when measured, the leave-one-class-out recall
    (`unseen_class_recall`), minus 0.02 per false alarm."""
    pc = res["per_class"]

    def recall(classes):
        eps = sum(pc[c]["episodes"] for c in classes)
        return sum(pc[c]["detected"] for c in classes) / eps if eps else None

    seen_r = recall([c for c in pc if c not in novel])
    novel_r = recall([c for c in pc if c in novel])
    parts = [res["pointwise"]["f1"]] + [
        r for r in (seen_r, novel_r, unseen_recall) if r is not None
    ]
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


# The targets that training-time data can check, used as constraints when choosing a
# decision rule (threshold + debounce) and a model: the objective is maximised among the
# settings that meet them.
MAX_MEDIAN_DELAY_STEPS = 3
SEEN_RECALL_TARGET = 0.95
FALSE_ALARMS_PER_DAY_TARGET = 1.0
# Consecutive anomalous steps before alarming (a rule's `for:`). At least 2: the false-alarm
# target (1 per 24 h, one alarm start in ~43,000 normal steps) is far below what the ~2 h of
# training-time normal traffic can resolve (none in 2 h still allows ~1.5 per hour at 95%),
# and the false alarms seen there were one-step blips (goroutine spikes, after-effects of
# episodes) that a second confirming step removes, at the cost of one step of the delay
# budget (<= 3 steps).
DEBOUNCE_OPTIONS = (2, 3, 4)


def seen_recall(res: dict[str, Any], novel: tuple[str, ...] = ()) -> float | None:
    pc = res["per_class"]
    eps = sum(c["episodes"] for k, c in pc.items() if k not in novel)
    return sum(c["detected"] for k, c in pc.items() if k not in novel) / eps if eps else None


def allowed_false_alarms(hours: float) -> int:
    """False alarms the target tolerates in `hours` of normal traffic: floor(hours / 24)."""
    return int(FALSE_ALARMS_PER_DAY_TARGET / 24 * hours)


def target_misses(res: dict[str, Any], novel: tuple[str, ...] = ()) -> list[str]:
    """Which of the issue's targets that training-time data can check these validation
    figures miss: median delay, seen-class episode recall, and no more false alarms than the
    target allows in the normal traffic checked, i.e. none in a couple of hours. The
    false-alarm check covers validation and, when given (`train_false_alarms`), the training
    split's normal traffic: a model that false-alarms even on traffic it was fitted to will do
    so on new traffic."""
    hours = res["normal_hours"] + res.get("train_normal_hours", 0.0)
    fa = res["false_alarms"] + res.get("train_false_alarms", 0)
    delay = res["median_delay_steps"]
    r = seen_recall(res, novel)
    misses = []
    if fa > allowed_false_alarms(hours):
        misses.append("false_alarms")
    if delay is not None and delay > MAX_MEDIAN_DELAY_STEPS:
        misses.append("delay")
    if r is not None and r < SEEN_RECALL_TARGET:
        misses.append("seen_recall")
    return misses


def meets_targets(res: dict[str, Any], novel: tuple[str, ...] = ()) -> bool:
    return not target_misses(res, novel)


def rank(
    res: dict[str, Any], novel: tuple[str, ...] = (), unseen_recall: float | None = None
) -> tuple[int, float]:
    """How candidates (models, thresholds, debounces) compare: fewest checkable targets
    missed first, then the validation objective."""
    return (-len(target_misses(res, novel)), objective(res, novel, unseen_recall))


@dataclass
class Judge:
    """What every candidate is chosen on, the same for all.

    Validation windows are restricted to the steps the longest window in the search can score
    (a W=32 model cannot score the first 31 steps of a split, so without this it would be
    judged without the episodes there). Training-split windows (trained classes only) serve
    the false-alarm check.
    """

    split: Split
    held_out: tuple[str, ...]
    val_novel: tuple[str, ...]
    max_window: int

    def __post_init__(self) -> None:
        from .series import Scaler

        w = make_windows(
            self.split.val, self.max_window, Scaler.fit(self.split.train),
            exclude_classes=self.held_out,
        )  # fmt: skip
        self.val_keys = set(zip(w.instances.tolist(), w.times.tolist(), strict=True))

    def val_windows(self, det: AnomalyDetector, without: tuple[str, ...] = ()):
        va = make_windows(
            self.split.val, det.window, det.scaler, exclude_classes=self.held_out + without
        )
        keep = np.fromiter(
            ((i, t) in self.val_keys for i, t in zip(va.instances, va.times, strict=True)),
            bool, len(va),
        )  # fmt: skip
        return va.subset(keep)

    def train_windows(self, det: AnomalyDetector):
        return make_windows(
            self.split.train, det.window, det.scaler,
            exclude_classes=self.held_out + self.val_novel,
        )  # fmt: skip


def choose_decision(
    raw: np.ndarray,
    w,
    step: float,
    novel: tuple[str, ...] = (),
    train: tuple[np.ndarray, Any] | None = None,
    debounces: tuple[int, ...] = DEBOUNCE_OPTIONS,
    n_thresholds: int = 120,
) -> tuple[float, int, dict[str, Any]]:
    """Threshold and debounce chosen together on validation windows `w` (raw scores `raw`).

    Debouncing (an alarm after k consecutive anomalous steps) removes one-step blips, and a
    threshold tuned without it is too strict once it is applied, so both are searched
    together: thresholds at quantiles of the validation scores, `debounces`. `train`
    (raw scores, windows) adds the training split's normal traffic to the false-alarm check.
    Ranked by `rank` (targets met, then objective); ties go to the smaller debounce, then the
    higher threshold. Returns (threshold, debounce, validation figures).
    """
    from .evaluate import FalseAlarmCounter

    raw = np.asarray(raw, float)
    cands = np.unique(np.quantile(raw, np.linspace(0.5, 0.9995, n_thresholds)))
    counter = None
    if train is not None:
        tr_raw, tr = train
        counter = FalseAlarmCounter(tr.times, tr.instances, tr.labels, step)
    best = None
    for k in debounces:
        for t in cands:
            alarm = debounce_by_instance(raw >= t, w.instances, w.times, k)
            res = evaluate_decisions(w.times, w.instances, w.labels, alarm, step)
            if counter is not None:
                res["train_false_alarms"] = counter.count(tr_raw >= t, k)
                res["train_normal_hours"] = counter.normal_hours
            key = (*rank(res, novel), -k, t)
            if best is None or key > best[0]:
                best = (key, float(max(t, 1e-9)), k, res)
    return best[1], best[2], best[3]


def tune_decision(det: AnomalyDetector, judge: Judge, va=None) -> tuple[int, dict[str, Any]]:
    """Re-choose the detector's threshold together with a debounce, keeping its scoring mode:
    the choice becomes the detector's rule `val_targets_debounced` (`add_rule`), reported
    beside its other rules. Returns the debounce and the validation figures."""
    step = det.step_seconds or 1.0
    novel = judge.val_novel
    va = judge.val_windows(det) if va is None else va
    if not len(va):
        raise ValueError(
            f"no validation windows of {det.window} steps: the recordings are too short for "
            "this step; record longer ones or train at a shorter step"
        )
    tr = judge.train_windows(det)
    mode = det.score_mode
    raw = _not_held_back(det, va, det.raw_scores(mode, va.X))
    tr_raw = _not_held_back(det, tr, det.raw_scores(mode, tr.X))
    t, k, chosen = choose_decision(raw, va, step, novel, (tr_raw, tr))
    det.add_rule("val_targets_debounced", t, score=mode, val_f1=f1_at(raw, va.y, t), debounce=k)
    res = evaluate_predictions(det.predict(va), step, k)  # as reported (type confusion too)
    res["train_false_alarms"] = chosen.get("train_false_alarms", 0)
    res["train_normal_hours"] = chosen.get("train_normal_hours", 0.0)
    return k, res


def _not_held_back(det: AnomalyDetector, w, raw: np.ndarray) -> np.ndarray:
    """Raw scores with the windows the memory of judged false alarms holds back set to 0 (they
    never alarm): the threshold is chosen for what the exporter will actually raise, not pushed
    up for a pattern engineers already silenced."""
    sup = det.suppression()  # learned with the serving score, det.score_mode
    if sup is None or not len(w):
        return raw
    return np.where(sup.holds_back(type_profile(w.X), raw), 0.0, raw)


def search(
    split: Split,
    held_out: tuple[str, ...],
    epochs: int,
    batch: int,
    seed: int,
    progress,
    grid_spec: dict = SEARCH,
    val_novel: tuple[str, ...] = (),
    judge: Judge | None = None,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, list[Candidate]]:
    judge = judge or Judge(split, held_out, val_novel, max(grid_spec["window"]))
    out: dict[str, list[Candidate]] = {}
    grid = [(w, f) for w in grid_spec["window"] for f in grid_spec["filters"]]
    total = len(kinds) * len(grid)
    n = 0
    for kind in kinds:
        for window, filters in grid:
            n += 1
            t0 = time.monotonic()
            det = AnomalyDetector(kind, window=window, filters=filters, seed=seed)
            det.train(
                epochs, batch, split.train, validation=split.val,
                exclude_classes=held_out + val_novel, val_exclude_classes=held_out,
            )  # fmt: skip
            k, res = tune_decision(det, judge)
            cand = Candidate(
                kind, window, filters, res, time.monotonic() - t0, det, k, val_novel
            )  # fmt: skip
            out.setdefault(kind, []).append(cand)
            progress(f"[{n}/{total}] {describe(cand)}, {cand.seconds:.0f}s")
    return out


def describe(c: Candidate) -> str:
    r = c.val
    return (
        f"{c.kind} W={c.window} filters={c.filters}: val F1 {r['pointwise']['f1']:.3f}, episode "
        f"recall {r['episode_recall']:.3f}, false alarms {r['false_alarms']} "
        f"(+{r.get('train_false_alarms', 0)} on training traffic), debounce {c.debounce}, "
        f"targets missed: {', '.join(target_misses(r, c.novel)) or 'none'}, objective {c.objective:.3f}"
        + ("" if c.unseen is None else f", unseen-class recall {c.unseen_mean:.3f}")
    )


def unseen_class_recall(
    cand: Candidate,
    split: Split,
    judge: Judge,
    epochs: int,
    batch: int,
    seed: int,
    progress,
) -> dict[str, AnomalyDetector]:
    """Leave-one-class-out: for each class the model was trained on, its point-wise recall on
    that class in validation when it never saw it. Sets `cand.unseen` and returns the
    retrained detectors (class -> detector) for the ensemble's own estimate.

    Validation holds a single never-seen class, which every model catches, so it cannot tell a
    model that learnt "not normal" from one that learnt "looks like the faults I was shown";
    on classes it never saw the second fails (it ignores features no trained class moved).
    A supervised model is retrained once per class with that class removed from its training
    data; the autoencoder is trained on normal steps only, so every class is already unseen
    to it. For every kind alike, threshold and debounce are then re-chosen (`choose_decision`)
    on a validation without the class, and the recall is measured on the class.
    """
    trained = [c for c in cand.val["per_class"] if c not in judge.val_novel]
    out, cand.unseen = {}, {}
    if cand.kind != "autoencoder" and len(trained) < 2:
        # Labels of one class only (say, the weak labels of one existing rule): without it a
        # supervised model has no anomaly to learn from, so the check cannot be made.
        progress(
            f"  unseen-class check {cand.kind}: skipped, it was trained on "
            f"{len(trained)} anomaly class(es) ({', '.join(trained) or 'none'}) and needs 2"
        )
        return out
    for n, cls in enumerate(trained, 1):
        det = cand.detector
        if cand.kind != "autoencoder":
            det = AnomalyDetector(cand.kind, window=cand.window, filters=cand.filters, seed=seed)
            det.train(
                epochs, batch, split.train, validation=split.val,
                exclude_classes=judge.held_out + judge.val_novel + (cls,),
                val_exclude_classes=judge.held_out + (cls,),
            )  # fmt: skip
            out[cls] = det
        cand.unseen[cls] = recall_when_unseen(det, judge, cls)
        progress(
            f"  unseen-class check {cand.kind} [{n}/{len(trained)}]: recall on {cls} when "
            f"never trained on it {cand.unseen[cls]:.3f}"
        )
    return out


def recall_when_unseen(det: AnomalyDetector, judge: Judge, cls: str) -> float:
    """Point-wise recall on `cls` in validation, with the decision (threshold and debounce)
    chosen as for any candidate but on a validation that does not hold `cls`."""
    mode = det.score_mode
    va, va_without = judge.val_windows(det), judge.val_windows(det, without=(cls,))
    tr = judge.train_windows(det)
    t, k, _ = choose_decision(
        det.raw_scores(mode, va_without.X), va_without, det.step_seconds or 1.0,
        judge.val_novel, (det.raw_scores(mode, tr.X), tr),
    )  # fmt: skip
    mask = va.labels == cls
    if not mask.any():
        return 0.0
    alarm = debounce_by_instance(det.raw_scores(mode, va.X) >= t, va.instances, va.times, k)
    return float(alarm[mask].mean())


def ensemble_candidate(
    best: dict[str, Candidate],
    split: Split,
    held_out: tuple[str, ...],
    val_novel: tuple[str, ...],
    progress,
    judge: Judge | None = None,
    loco: dict[str, dict[str, AnomalyDetector]] | None = None,
) -> Candidate:
    """The best autoencoder OR the best supervised model, scored on validation like the rest.
    `loco` (kind -> class -> detector trained without it) gives its unseen-class recall:
    the same ensemble rule with the supervised member swapped for the one that never saw
    the class."""
    from .ensemble import EnsembleDetector

    t0 = time.monotonic()
    sup = max((best[k] for k in ("classifier", "siamese")), key=lambda c: c.rank)
    ens = EnsembleDetector([best["autoencoder"].detector, sup.detector])
    judge = judge or Judge(split, held_out, val_novel, ens.window)
    va = judge.val_windows(ens)
    ens.fit_decision(va)
    k, res = tune_decision(ens, judge, va)
    cand = Candidate(
        "ensemble", ens.window, ens.filters, res, time.monotonic() - t0, ens, k, val_novel
    )  # fmt: skip
    if loco is not None and best["autoencoder"].unseen is not None:
        cand.unseen = {}
        for cls, sup_c in loco.get(sup.kind, {}).items():
            e = EnsembleDetector([best["autoencoder"].detector, sup_c])
            cand.unseen[cls] = recall_when_unseen(e, judge, cls)
    progress(f"ensemble autoencoder | {sup.kind}: {describe(cand)}")
    return cand


def pca_baseline(
    split: Split,
    held_out: tuple[str, ...],
    window: int,
    scaler,
    val_novel: tuple[str, ...] = (),
    step: float = 1.0,
) -> PCABaseline:
    """PCA reconstruction error of the last step, fit on pure-normal training windows.

    Its alarms go through the models' own decision procedure (threshold and debounce chosen
    together on validation, targets first: `choose_decision`), so the comparison is like for
    like. `alarm_no_debounce` is the bare best-validation-F1 threshold, reported beside it: a
    detector that may alarm on a single step gets the first step of every episode that a
    debounced one gives up for its false-alarm rate.
    """
    from sklearn.decomposition import PCA

    tr = make_windows(split.train, window, scaler, exclude_classes=held_out + val_novel)
    va = make_windows(split.val, window, scaler, exclude_classes=held_out)
    te = make_windows(split.test, window, scaler)
    pca = PCA(n_components=0.9, random_state=0).fit(tr.X[tr.pure][:, -1, :])

    def err(w):
        x = w.X[:, -1, :]
        return np.mean((x - pca.inverse_transform(pca.transform(x))) ** 2, axis=1)

    raw, raw_va = err(te), err(va)
    t, k, _ = choose_decision(raw_va, va, step, val_novel, (err(tr), tr))
    t_bare = best_f1_threshold(raw_va, va.y)
    return PCABaseline(
        windows=te,
        raw=raw,
        components=int(pca.n_components_),
        alarm=debounce_by_instance(raw >= t, te.instances, te.times, k),
        threshold=t,
        debounce=k,
        alarm_no_debounce=raw >= t_bare,
        threshold_no_debounce=t_bare,
    )


def mixin_baseline(datasets: list[ds_mod.Dataset], te, rules_file: Path) -> np.ndarray | None:
    """Alarms of the coredns-mixin rules on the test windows, evaluated by real Prometheus."""
    try:
        from .baselines.promql import evaluate_alert_rules
    except ImportError:
        log.warning("mixin baseline unavailable (training.baselines missing)")
        return None
    alarm = np.zeros(len(te), bool)
    for ds in datasets:
        # Datasets reuse instance names (coredns-0 ...): only this recording's time range.
        t_lo, t_hi = float(ds.samples["timestamp"].min()), float(ds.samples["timestamp"].max())
        in_ds = (te.times >= t_lo) & (te.times <= t_hi)
        idx_by_inst = {
            inst: np.flatnonzero((te.instances == inst) & in_ds) for inst in ds.instances
        }
        times = {inst: te.times[idx] for inst, idx in idx_by_inst.items() if len(idx)}
        if not times:
            continue
        fired = evaluate_alert_rules(ds, rules_file, times)
        for inst, alerts in fired.items():
            idx = idx_by_inst[inst]
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


MIN_VAL_WINDOWS = 100


def windows_that_fit(split: Split, grid: dict, progress=print) -> dict:
    """The grid without window lengths the validation split is too short for: at a 15 or 30 s
    step a 35-minute recording's validation part is a few dozen steps per instance, and every
    candidate is judged on the windows of the longest length searched."""
    from .series import Scaler

    scaler = Scaler.fit(split.train)
    fit = [w for w in grid["window"] if len(make_windows(split.val, w, scaler)) >= MIN_VAL_WINDOWS]
    if not fit:
        fit = [min(grid["window"])]
    if tuple(fit) != tuple(grid["window"]):
        progress(f"windows {sorted(set(grid['window']) - set(fit))} left out: the validation "
                 f"split holds fewer than {MIN_VAL_WINDOWS} windows of them")  # fmt: skip
    return {**grid, "window": tuple(fit)}


# --- What `train` takes and what it measures -------------------------------------------------
# Typed until results.json is written (`TrainResults.to_dict`, the same document as ever); a
# detector's figures are evaluate.py's (`Figures`: pointwise, per_class, episode_recall, ...).

Figures = dict[str, Any]


@dataclass(frozen=True)
class TrainOptions:
    """`coredns-anomaly train`'s options. `export_kind` exports the best configuration of that
    kind instead of the best of all on validation (every kind is still trained, scored and
    reported): the unsupervised autoencoder learns only what healthy traffic looks like, which
    is what must carry over to a cluster none of the data came from. `threshold_rule` names
    the exported model's decision rule instead of the validation-tuned one (THRESHOLD_RULES)."""

    datasets: list[Path]
    bundle_out: Path
    report_dir: Path
    label_files: list[Path] = field(default_factory=list)
    held_out: tuple[str, ...] = HELD_OUT_DEFAULT
    val_novel: tuple[str, ...] = VAL_NOVEL_DEFAULT
    epochs: int = 40
    batch: int = 64
    seed: int = 0
    mixin_rules: Path | None = None
    quick: bool = False
    include_weak: bool = True
    export_kind: str | None = None
    threshold_rule: str | None = None
    # Train, score and export this kind only, without the comparisons (the other kinds, the
    # ensemble, the coredns-mixin baseline): retraining one model on your own data and labels
    # takes a minute or two instead of many.
    only_kind: str | None = None

    def __post_init__(self) -> None:
        if self.only_kind is not None:
            if self.only_kind not in KINDS:
                raise OptionError(f"--only-kind {self.only_kind!r}: one of {', '.join(KINDS)}")
            if self.export_kind not in (None, self.only_kind):
                raise OptionError(
                    f"--only-kind {self.only_kind} trains no {self.export_kind} to export"
                )

    @property
    def kinds(self) -> tuple[str, ...]:
        return (self.only_kind,) if self.only_kind else KINDS


@dataclass
class Data:
    """The datasets as the search sees them: loaded, split, the grid that fits the split, and
    the judge every candidate is chosen by."""

    loaded: list[ds_mod.Dataset]
    split: Split
    grid: dict
    judge: Judge


@dataclass
class ModelConfig:
    window: int
    filters: int
    debounce: int
    threshold: float
    alternatives: dict[str, float]  # every decision rule's threshold
    ae_score: str | None  # the autoencoder's served score


@dataclass
class RuleOnTest:
    """One of a model's decision rules, applied on test with the model's debounce."""

    threshold: float
    val_f1: float | None
    test_f1: float
    test_episode_recall: float
    test_false_alarms: int


@dataclass
class ModelResult:
    """The best configuration of one kind, scored once on test."""

    figures: Figures
    seen_vs_held_out: dict[str, Any]  # split_report
    config: ModelConfig
    validation_objective: float
    unseen_class_recall_val: dict[str, float] | None
    rule: str  # the decision rule used
    threshold_rules: dict[str, RuleOnTest]
    train_info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.figures,
            "seen_vs_held_out": self.seen_vs_held_out,
            "config": asdict(self.config),
            "validation_objective": self.validation_objective,
            "unseen_class_recall_val": self.unseen_class_recall_val,
            "rule": self.rule,
            "threshold_rules": {n: asdict(r) for n, r in self.threshold_rules.items()},
            "train_info": self.train_info,
        }


@dataclass
class PCAConfig:
    components: int
    threshold: float
    debounce: int


@dataclass
class BaselineResult:
    figures: Figures
    seen_vs_held_out: dict[str, Any]
    config: PCAConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {**self.figures, "seen_vs_held_out": self.seen_vs_held_out}
        return out if self.config is None else out | {"config": asdict(self.config)}


@dataclass
class PCABaseline:
    """The PCA baseline on the test windows: its raw scores and both decisions."""

    windows: Windows
    raw: np.ndarray
    components: int
    alarm: np.ndarray  # the models' decision procedure (debounced)
    threshold: float
    debounce: int
    alarm_no_debounce: np.ndarray  # the bare best-validation-F1 threshold
    threshold_no_debounce: float


@dataclass
class SearchRow:
    """One searched configuration (and the ensemble) as chosen on validation."""

    kind: str
    window: int
    filters: int
    debounce: int
    objective: float
    unseen_class_recall: dict[str, float] | None
    val_f1: float
    val_episode_recall: float
    seconds: float
    val_false_alarms: int
    val_normal_hours: float
    train_false_alarms: int | None
    train_normal_hours: float | None
    val_median_delay_steps: float | None
    targets_missed: list[str]

    @classmethod
    def of(cls, c: Candidate, novel: tuple[str, ...]) -> SearchRow:
        v = c.val
        return cls(
            c.kind, c.window, c.filters, c.debounce, c.objective, c.unseen, v["pointwise"]["f1"],
            v["episode_recall"], c.seconds, v["false_alarms"], v["normal_hours"],
            v.get("train_false_alarms"), v.get("train_normal_hours"), v["median_delay_steps"],
            target_misses(v, novel),
        )  # fmt: skip


@dataclass
class TrainResults:
    """Everything `train` measured; results.json is `to_dict()`."""

    models: dict[str, ModelResult]
    baselines: dict[str, BaselineResult]
    held_out_classes: list[str]
    val_novel_classes: list[str]
    search: list[SearchRow]
    chosen: str
    chosen_by: str  # "validation" or "--export-kind"
    best_on_validation: str
    train_seconds: float
    datasets: list[str]
    label_files: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": {k: m.to_dict() for k, m in self.models.items()},
            "baselines": {k: b.to_dict() for k, b in self.baselines.items()},
            "held_out_classes": self.held_out_classes,
            "val_novel_classes": self.val_novel_classes,
            "search": [asdict(r) for r in self.search],
            "chosen": self.chosen,
            "chosen_by": self.chosen_by,
            "best_on_validation": self.best_on_validation,
            "train_seconds": self.train_seconds,
            "datasets": self.datasets,
            "label_files": self.label_files,
        }


# --- The pipeline, step by step ---------------------------------------------------------------


def run(opts: TrainOptions, progress=print) -> TrainResults:
    """The whole pipeline: data, search, the best of each kind, the exported choice, test,
    bundle and report. Only validation chooses; test is scored once, after every choice."""
    t_start = time.monotonic()
    export_kind = opts.export_kind or opts.only_kind
    if opts.threshold_rule is not None:  # before any training: a typo must not cost the search
        export_kind = check_threshold_rule(opts.threshold_rule, export_kind, progress)
    data = prepare_data(opts, progress)
    cands = search(
        data.split, opts.held_out, opts.epochs, opts.batch, opts.seed, progress, data.grid,
        opts.val_novel, data.judge, opts.kinds,
    )  # fmt: skip
    best_per_kind = best_of_each_kind(cands, data, opts, progress)
    best, chosen = choose_export(best_per_kind, export_kind, progress)
    if opts.threshold_rule is not None:
        use_threshold_rule(chosen, opts.threshold_rule, data.judge, progress)
    models, test_preds = score_on_test(best_per_kind, data.split, opts)
    step = chosen.detector.step_seconds or 1.0
    pca = pca_baseline(
        data.split, opts.held_out, chosen.window, chosen.detector.scaler, opts.val_novel, step
    )
    results = TrainResults(
        models=models,
        baselines=baselines_on_test(pca, chosen, data, opts),
        held_out_classes=list(opts.held_out),
        val_novel_classes=list(opts.val_novel),
        search=[
            SearchRow.of(c, opts.val_novel)
            for v in [*cands.values(), [best_per_kind[k] for k in best_per_kind if k not in cands]]
            for c in v
        ],
        chosen=chosen.kind,
        chosen_by="--export-kind" if export_kind else "validation",
        best_on_validation=best.kind,
        train_seconds=time.monotonic() - t_start,
        datasets=[str(p) for p in opts.datasets],
        label_files=[str(p) for p in opts.label_files],
    )
    export_chosen(chosen, data, results, opts)
    write_results(results, best_per_kind, test_preds, pca, data.split, opts.report_dir)
    progress(
        f"done in {results.train_seconds:.0f}s; bundle {opts.bundle_out}, report {opts.report_dir}"
    )
    return results


def prepare_data(opts: TrainOptions, progress) -> Data:
    """Datasets (with the engineers' labels) -> series -> train | validation | test, the search
    grid without windows validation is too short for, and the judge of every candidate."""
    series, loaded = load_series(opts.datasets, opts.label_files, opts.include_weak)
    split = time_split(series)
    progress(
        f"data: {len(series)} series, {sum(len(s.times) for s in series)} steps; split train/val/test by time"
    )
    grid = windows_that_fit(split, QUICK_SEARCH if opts.quick else SEARCH, progress)
    judge = Judge(split, opts.held_out, opts.val_novel, max(grid["window"]))
    return Data(loaded, split, grid, judge)


def best_of_each_kind(
    cands: dict[str, list[Candidate]], data: Data, opts: TrainOptions, progress
) -> dict[str, Candidate]:
    """The best configuration of each kind, its leave-one-class-out recall, and the ensemble of
    the best autoencoder and the best supervised model."""
    best_per_kind = {k: max(v, key=lambda c: c.rank) for k, v in cands.items()}
    # The kinds are compared with their leave-one-class-out recall too (the grid within a kind
    # is not: it would multiply the training time by the number of classes).
    loco = {}
    for kind, c in best_per_kind.items():
        loco[kind] = unseen_class_recall(
            c, data.split, data.judge, opts.epochs, opts.batch, opts.seed, progress
        )
        progress(describe(c))
    if set(KINDS) <= set(best_per_kind):  # the ensemble needs them all
        best_per_kind["ensemble"] = ensemble_candidate(
            best_per_kind, data.split, opts.held_out, opts.val_novel, progress, data.judge, loco
        )
    return best_per_kind


def choose_export(
    best_per_kind: dict[str, Candidate], export_kind: str | None, progress
) -> tuple[Candidate, Candidate]:
    """(the best on validation, the one to export: that, or the best of `export_kind`)."""
    best = max(best_per_kind.values(), key=lambda c: c.rank)
    if export_kind is not None and export_kind not in best_per_kind:
        raise OptionError(f"--export-kind {export_kind!r}: one of {', '.join(best_per_kind)}")
    chosen = best_per_kind[export_kind] if export_kind else best
    progress(
        f"chosen {'by --export-kind' if export_kind else 'on validation'}: {chosen.kind} "
        f"W={chosen.window} filters={chosen.filters} debounce={chosen.debounce} (best on "
        f"validation: {best.kind})"
    )
    return best, chosen


def score_on_test(
    best_per_kind: dict[str, Candidate], split: Split, opts: TrainOptions
) -> tuple[dict[str, ModelResult], dict[str, Predictions]]:
    """Each kind's best configuration scored once on test, with every one of its rules."""
    models, preds = {}, {}
    for kind, c in best_per_kind.items():
        det = c.detector
        step = det.step_seconds or 1.0
        te = make_windows(split.test, c.window, det.scaler)
        preds[kind] = det.predict(te)
        figures = evaluate_predictions(preds[kind], step, c.debounce)
        rules = {}
        for name, r in det.threshold_rules.items():
            raw = det.raw_scores(r["score"], te.X)
            alarm = debounce_by_instance(raw >= r["threshold"], te.instances, te.times, c.debounce)
            rr = evaluate_decisions(te.times, te.instances, te.labels, alarm, step)
            rules[name] = RuleOnTest(
                r["threshold"], r["val_f1"], rr["pointwise"]["f1"], rr["episode_recall"],
                rr["false_alarms"],
            )  # fmt: skip
        models[kind] = ModelResult(
            figures=figures,
            seen_vs_held_out=split_report(figures, opts.held_out, opts.val_novel),
            config=ModelConfig(
                c.window,
                c.filters,
                c.debounce,
                det.threshold,
                det.thresholds,
                det.score_mode if kind == "autoencoder" else None,
            ),  # fmt: skip
            validation_objective=c.objective,
            unseen_class_recall_val=c.unseen,
            rule=det.rule,
            threshold_rules=rules,
            train_info=det.train_info,
        )
    return models, preds


def baselines_on_test(
    pca: PCABaseline, chosen: Candidate, data: Data, opts: TrainOptions
) -> dict[str, BaselineResult]:
    """The PCA baseline (debounced like the models, and bare) and the coredns-mixin rules
    evaluated by the real Prometheus, on the exported model's test windows."""
    step = chosen.detector.step_seconds or 1.0
    out = {}
    w = pca.windows
    for name, alarm, config in (
        ("pca", pca.alarm, PCAConfig(pca.components, pca.threshold, pca.debounce)),
        ("pca_no_debounce", pca.alarm_no_debounce,
         PCAConfig(pca.components, pca.threshold_no_debounce, 1)),
    ):  # fmt: skip
        res = evaluate_decisions(w.times, w.instances, w.labels, alarm, step)
        out[name] = BaselineResult(res, split_report(res, opts.held_out, opts.val_novel), config)
    if opts.mixin_rules and opts.mixin_rules.is_file() and not opts.only_kind:
        te = make_windows(data.split.test, chosen.window, chosen.detector.scaler)
        alarm = mixin_baseline(data.loaded, te, opts.mixin_rules)
        if alarm is not None:
            res = evaluate_decisions(te.times, te.instances, te.labels, alarm, step)
            out["coredns_mixin"] = BaselineResult(
                res, split_report(res, opts.held_out, opts.val_novel)
            )
    return out


def export_chosen(chosen: Candidate, data: Data, results: TrainResults, opts: TrainOptions) -> None:
    """The bundle (model.tflite + model.json with what it was trained on and how it scored)
    and the Keras weights beside it, for import_weights and retraining."""
    det = chosen.detector
    step = det.step_seconds or 1.0
    sample = make_windows(data.split.val, chosen.window, det.scaler).X[
        :64
    ]  # real windows for the TFLite check
    datasets = [
        {"path": str(p), "meta": {k: ds.meta.get(k) for k in ("coredns_version", "seed", "preset", "step_seconds", "recorded_from")}}
        for p, ds in zip(opts.datasets, data.loaded, strict=True)
    ]  # fmt: skip
    det.export(
        opts.bundle_out,
        sample=sample,
        debounce_steps=chosen.debounce,
        clear_steps=clear_steps(step),
        info={
            "training_data": {"datasets": datasets, "label_files": results.label_files},
            "evaluation": {"test": _slim(results.models[chosen.kind].to_dict()), "validation": _slim(chosen.val), "held_out_classes": list(opts.held_out), "debounced": True},
            "versions_coredns": sorted({str(ds.meta.get("coredns_version")) for ds in data.loaded}),
        },
    )  # fmt: skip
    det.save(opts.bundle_out / "keras")


def write_results(
    results: TrainResults,
    best_per_kind: dict[str, Candidate],
    test_preds: dict[str, Predictions],
    pca: PCABaseline,
    split: Split,
    report_dir: Path,
) -> None:
    """results/results.json, and results.md with its plots (report.py) written from it."""
    from .report import write_report

    doc = results.to_dict()
    (report_dir / "results").mkdir(parents=True, exist_ok=True)
    (report_dir / "results" / "results.json").write_text(
        json.dumps(doc, indent=1, default=json_default)
    )
    write_report(doc, dict(best_per_kind), test_preds, pca, report_dir, split)


# The decision rules `train --threshold-rule` can pick, by model kind (the detector computes
# and reports all of them; by default the pipeline's validation-tuned one is used).
THRESHOLD_RULES = {
    "autoencoder": (
        "latent_min_known_anomaly", "reconstruction_val_f1", "mse_val_f1", "latent_val_f1",
    ),
    "classifier": ("p_half", "val_f1"),
    "siamese": ("nearer_centroid", "val_f1"),
}  # fmt: skip


def check_threshold_rule(rule: str, export_kind: str | None, progress) -> str:
    """The kind to export for `rule` (before any training: a typo must not cost the search)."""
    kinds = [k for k, rules in THRESHOLD_RULES.items() if rule in rules]
    if not kinds:
        names = sorted({r for rules in THRESHOLD_RULES.values() for r in rules})
        raise OptionError(f"--threshold-rule {rule!r}: one of {', '.join(names)}")
    if export_kind is None:
        progress(f"--threshold-rule {rule}: exporting the {kinds[0]}")
        return kinds[0]
    if export_kind not in kinds:
        raise OptionError(
            f"--threshold-rule {rule} is a rule of the {' or '.join(kinds)}, not of the "
            f"--export-kind {export_kind}"
        )
    return export_kind


def use_threshold_rule(c: Candidate, rule: str, judge: Judge, progress) -> None:
    """Make `rule` the candidate's decision, and its validation figures the ones reported."""
    det = c.detector
    if rule not in det.threshold_rules:
        raise OptionError(
            f"--threshold-rule {rule}: not computed for this data (the latent rule needs "
            "labelled anomalies in the training split: the lab's, or engineers' verdicts)"
        )
    det.choose_rule(rule)
    c.val = evaluate_predictions(
        det.predict(judge.val_windows(det)), det.step_seconds or 1.0, c.debounce
    )
    progress(f"decision rule by --threshold-rule: {rule} (threshold {det.threshold:.4g})")


def _slim(res: dict[str, Any]) -> dict[str, Any]:
    """The figures model.json carries; `false_alarms_per_hour_upper95` is the one-sided 95%
    Poisson bound on the rate (the measured count says little over a fraction of an hour)."""
    from .report import poisson_upper

    out = {
        k: res[k]
        for k in (
            "pointwise",
            "episode_recall",
            "median_delay_steps",
            "false_alarms",
            "false_alarms_per_hour",
            "normal_hours",
            "seen_vs_held_out",
            "train_false_alarms",
            "train_normal_hours",
        )
        if k in res
    }
    if res.get("normal_hours"):
        out["false_alarms_per_hour_upper95"] = (
            poisson_upper(res["false_alarms"]) / res["normal_hours"]
        )
    return out
