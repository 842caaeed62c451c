"""docs/results.md and its PNG plots, written from the pipeline's measured results only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .plots import CLASS_COLORS  # noqa: E402
from .series import NORMAL, episodes  # noqa: E402


def _fmt(x, digits=3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _row(name: str, r: dict[str, Any], step: float) -> str:
    p = r["pointwise"]
    sv = r.get("seen_vs_held_out", {})
    d = r.get("median_delay_steps")
    return (
        f"| {name} | {_fmt(p['precision'])} | {_fmt(p['recall'])} | {_fmt(p['f1'])} | "
        f"{_fmt(sv.get('seen', {}).get('recall_episode'))} | {_fmt(sv.get('val_novel', {}).get('recall_episode'))} | {_fmt(sv.get('held_out', {}).get('recall_episode'))} | "
        f"{_fmt(d, 1)} ({_fmt(None if d is None else d * step, 0)} s) | {r['false_alarms']} | {_fmt(r['false_alarms_per_hour'], 2)} |"
    )


def write_report(results, best, preds, pca, out_dir: Path, split) -> Path:
    out_dir = Path(out_dir)
    img = out_dir / "results"
    img.mkdir(parents=True, exist_ok=True)
    chosen = results["chosen"]
    step = best[chosen].detector.step_seconds or 1.0
    _plot_curves(best, img / "training_curves.png")
    _plot_pr(preds, pca, img / "pr_curves.png")
    _plot_confusions(results, img / "confusion_matrices.png")
    _plot_timeline(preds[chosen], best[chosen].debounce, img / "score_timeline.png")
    m = results["models"][chosen]
    lines = [
        "# Results",
        "",
        "Written by `coredns-anomaly train` from measured figures only (`results/results.json`).",
        f"Datasets: {', '.join(results['datasets'])}. Held-out classes (never in train or validation): "
        f"{', '.join(results['held_out_classes'])}. Validation-novel (not in train, in validation, so model choice "
        f"rewards catching the unseen): {', '.join(results.get('val_novel_classes', [])) or 'none'}. "
        f"Step {step:.3g} s. Training took {results['train_seconds']:.0f} s.",
        "",
        f"Chosen on validation: **{chosen}** (window {m['config']['window']}, filters {m['config']['filters']}, "
        f"debounce {m['config']['debounce']} steps, threshold {m['config']['threshold']:.4g}).",
        "",
        "## Test split",
        "",
        "| detector | precision | recall | F1 (point-wise) | episode recall, seen | episode recall, validation-novel | episode recall, held-out | median delay, steps | false alarms | per hour |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["models"].items():
        lines.append(_row(kind + (" (chosen)" if kind == chosen else ""), r, step))
    for name, r in results["baselines"].items():
        lines.append(_row(f"baseline: {name}", r, step))
    lines += ["", f"Normal traffic in the test split: {m['normal_hours']:.2f} h.", ""]
    lines += [
        "## Per class, chosen model",
        "",
        "| class | episodes | detected | episode recall | point-wise recall | median delay, steps |",
        "|---|---|---|---|---|---|",
    ]
    for cls, c in m["per_class"].items():
        tag = " (held out)" if cls in results["held_out_classes"] else ""
        tag = " (validation-novel)" if cls in results.get("val_novel_classes", []) else tag
        lines.append(
            f"| {cls}{tag} | {c['episodes']} | {c['detected']} | {_fmt(c['recall_episode'])} | {_fmt(c['recall_pointwise'])} | {_fmt(c['median_delay_steps'], 1)} |"
        )
    lines += [
        "",
        "## Likely anomaly type (nearest class centroid), chosen model",
        "",
        "Rows: true class of flagged anomalous windows; columns: predicted type.",
        "",
    ]
    tc = m.get("type_confusion", {})
    cols = sorted({t for row in tc.values() for t in row})
    if cols:
        lines += [
            "| true \\ predicted | " + " | ".join(cols) + " |",
            "|---" * (len(cols) + 1) + "|",
        ]
        for cls, row in tc.items():
            lines.append(f"| {cls} | " + " | ".join(str(row.get(c, 0)) for c in cols) + " |")
    lines += [
        "",
        "## Decision rules (every rule reported; the best validation F1 is used)",
        "",
        "| model | rule | threshold | val F1 | test F1 | test episode recall | test false alarms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["models"].items():
        for name, t in r.get("threshold_rules", {}).items():
            used = " (used)" if name == r.get("rule") else ""
            lines.append(
                f"| {kind} | {name}{used} | {t['threshold']:.4g} | {t['val_f1']:.3f} | {t['test_f1']:.3f} | {t['test_episode_recall']:.3f} | {t['test_false_alarms']} |"
            )
    lines += [
        "",
        "## Labels used for training",
        "",
        "| model | windows by label source |",
        "|---|---|",
    ]
    for kind, r in results["models"].items():
        lines.append(f"| {kind} | {r.get('train_info', {}).get('label_sources', {})} |")
    lines += [
        "",
        "## Search (validation split)",
        "",
        "| model | window | filters | debounce | objective | val F1 | val episode recall | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in results["search"]:
        lines.append(
            f"| {s['kind']} | {s['window']} | {s['filters']} | {s['debounce']} | {s['objective']:.3f} | {s['val_f1']:.3f} | {s['val_episode_recall']:.3f} | {s['seconds']:.0f} |"
        )
    lines += [
        "",
        "## Plots",
        "",
        "![training curves](results/training_curves.png)",
        "![precision-recall](results/pr_curves.png)",
        "![confusion matrices](results/confusion_matrices.png)",
        "![score timeline](results/score_timeline.png)",
        "",
    ]
    path = out_dir / "results.md"
    path.write_text("\n".join(lines))
    return path


def _plot_curves(best, out: Path) -> None:
    fig, axes = plt.subplots(1, len(best), figsize=(5 * len(best), 3.2), squeeze=False)
    for ax, (kind, c) in zip(axes[0], best.items(), strict=True):
        for key in ("loss", "val_loss"):
            if key in c.detector.history:
                ax.plot(c.detector.history[key], label=key)
        ax.set_title(f"{kind} (W={c.window}, filters={c.filters})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _pr(raw: np.ndarray, y: np.ndarray):
    order = np.argsort(-raw)
    tp = np.cumsum(y[order])
    fp = np.cumsum(1 - y[order])
    prec = tp / np.maximum(tp + fp, 1)
    rec = tp / max(y.sum(), 1)
    return rec, prec


def _plot_pr(preds, pca, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for kind, p in preds.items():
        rec, prec = _pr(p.raw, (p.labels != NORMAL).astype(int))
        ax.plot(rec, prec, label=kind)
    w = pca["windows"]
    rec, prec = _pr(pca["raw"], (w.labels != NORMAL).astype(int))
    ax.plot(rec, prec, "--", label="PCA baseline")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("precision-recall on test (point-wise)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _plot_confusions(results, out: Path) -> None:
    items = list(results["models"].items()) + [
        (f"baseline {k}", v) for k, v in results["baselines"].items()
    ]
    fig, axes = plt.subplots(1, len(items), figsize=(2.8 * len(items), 2.8), squeeze=False)
    for ax, (name, r) in zip(axes[0], items, strict=True):
        c = r["pointwise"]["confusion"]
        m = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set_xticks([0, 1], ["normal", "anomaly"], fontsize=7)
        ax.set_yticks([0, 1], ["normal", "anomaly"], fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_title(name, fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _plot_timeline(p, k: int, out: Path) -> None:
    insts = sorted(set(p.instances))
    fig, axes = plt.subplots(len(insts), 1, figsize=(12, 2.2 * len(insts)), squeeze=False)
    for ax, inst in zip(axes[:, 0], insts, strict=True):
        idx = np.flatnonzero(p.instances == inst)
        idx = idx[np.argsort(p.times[idx])]
        t = (p.times[idx] - p.times[idx][0]) / 60
        ax.plot(t, np.clip(p.score[idx], 0, 5), lw=0.8, color="k")
        ax.axhline(1.0, color="r", ls="--", lw=0.7)
        for cls, i, j in episodes(p.labels[idx], p.times[idx]):
            ax.axvspan(
                t[i], t[min(j, len(t) - 1)], color=CLASS_COLORS.get(cls, "orange"), alpha=0.3, lw=0
            )
        ax.set_ylabel(f"{inst}\nscore", fontsize=7)
    axes[-1][0].set_xlabel("minutes into the test split")
    fig.suptitle(
        f"normalised score on test (>= 1 anomalous; debounce {k}); episodes shaded by class",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
