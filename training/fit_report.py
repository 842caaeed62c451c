"""fit-report.md, fit-report.json and the three PNGs of `coredns-anomaly fit`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import evt
from .export import json_default
from .inject import fmt_pct

PNGS = ("fit-scores.png", "fit-alarms-vs-threshold.png", "fit-recall.png")


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "n/a" if x is None else format(x, spec)


def write_report(summary: dict, tail: evt.TailFit, scores: np.ndarray, out: Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fit-report.json").write_text(json.dumps(summary, indent=1, default=json_default) + "\n")
    _plots(summary, tail, scores, out)
    (out / "fit-report.md").write_text(markdown(summary))
    return out / "fit-report.md"


def markdown(s: dict) -> str:
    t, cal, h = s["tail"], s["calibration"], s["healthy_instance_hours"]
    inj = s.get("injected") or {}
    lines = [
        "# Fit report",
        "",
        f"Fitted on {len(s['instances'])} instance(s) at their own step of **{s['step_seconds']:.4g} s** "
        f"in {s['seconds']:.0f} s. Bundle: `{s['bundle']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| instances | {', '.join(s['instances'][:12])}{' ...' if len(s['instances']) > 12 else ''} |",
        f"| skipped | {len(s['skipped']['skipped_short'])} too short, {len(s['skipped']['skipped_unhealthy'])} without a healthy stretch |",
        f"| healthy instance-hours, training part (first {100 * s['train_fraction']:.0f}%) | {h['train_part']:.1f} ({h['train_windows_used']} windows used after subsampling, {h['train_windows_hours']:.1f} h) |",
        f"| healthy instance-hours, calibration part | {h['calibration']:.1f} ({h['calibration_windows']} scored windows) |",
        f"| epochs | {s['epochs']['run']} of at most {s['epochs']['max']}{'; from ' + s['epochs']['base_model'] if s['epochs']['base_model'] else ', fresh weights'} |",
        f"| budget | {s['budget_per_day']:g} false alarm(s) per instance per day = per-step probability {s['per_step_probability']:.3g} |",
        f"| **threshold** (raw {s['score_mode']} score) | **{s['threshold']:.5g}** ({s['threshold_method']}) |",
        f"| tail | {t['method']}: u = {t['u']:.4g} (the {t['quantile']:.3f} quantile), {t['n_exceed']} of {t['n']} scores above (zeta {t['zeta']:.3g}), shape xi = {_fmt(t['xi'])}, scale sigma = {_fmt(t['sigma'])} |",
        f"| expected alarms per instance per day at the threshold | {_fmt(s['expected_alarms_per_instance_day'])} |",
        f"| empirical on calibration ({cal['healthy_instance_days']:.2f} healthy instance-days) | {cal['alarms']} alarm(s) ({_fmt(cal['alarms_per_instance_day'])}/instance/day), {cal['exceeding_steps']} exceeding step(s) |",
        f"| injected-fault recall | {fmt_pct(inj.get('recall'))} over {len(inj.get('episodes', []))} episodes |",
        "",
        f"How alarms are counted: {s['alarm_counting']}.",
    ]
    if s.get("extrapolation_factor", 0) > 1:
        lines += [
            "",
            f"**Extrapolated:** the budget is a per-step probability {s['extrapolation_factor']:.3g}x "
            f"smaller than 1 / (healthy calibration windows = {t['n']}): no observed score can show "
            "it, the threshold rests on the tail model. More calibration data (days) narrows this.",
        ]
    if t.get("note"):
        lines += ["", f"**Tail fallback:** {t['note']}."]
    if s["threshold_method"] == "empirical":
        lines += ["", "The budget is loose enough that the threshold is the empirical quantile."]
    lines += ["", "![scores](fit-scores.png) ![alarms](fit-alarms-vs-threshold.png)", ""]
    lines += ["## Recall on injected lab faults", ""]
    if inj.get("per_class"):
        lines += [
            f"{inj['note']}.",
            "",
            "| class | episodes | detected | recall | median delay (steps) |",
            "|---|---|---|---|---|",
        ]
        for c, v in inj["per_class"].items():
            lines.append(
                f"| {c} | {v['episodes']} | {v['detected']} | {fmt_pct(v['recall'])} | {_fmt(v['median_delay_steps'], 'g')} |"
            )
        lines += ["", "![recall](fit-recall.png)"]
    else:
        lines.append(f"Not estimated: {inj.get('note', 'no lab data')}.")
    lab = s.get("labelled") or {}
    if lab:
        lines += ["", "## Recall on the data's own labelled episodes", "",
                  "| class | episodes | detected | recall | median delay (steps) |", "|---|---|---|---|---|"]  # fmt: skip
        for c, v in lab["per_class"].items():
            lines.append(
                f"| {c} | {v['episodes']} | {v['detected']} | {fmt_pct(v['recall'])} | {_fmt(v['median_delay_steps'], 'g')} |"
            )
    sk = s["skipped"]["skipped_short"] + s["skipped"]["skipped_unhealthy"]
    if sk:
        lines += ["", "Skipped instances: " + "; ".join(sk[:20]) + ("..." if len(sk) > 20 else "")]
    return "\n".join(lines) + "\n"


def _plots(s: dict, tail: evt.TailFit, scores: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr, step = s["threshold"], s["step_seconds"]
    scores = np.asarray(scores, float)
    hi = max(thr * 1.3, float(scores.max()) * 1.05)

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, hi, 80)
    counts, edges, _ = ax.hist(
        scores, bins=bins, color="#4c72b0", alpha=0.8, label="healthy calibration scores"
    )
    if tail.method in ("gpd", "exponential"):
        x = np.linspace(tail.u, hi, 200)
        width = edges[1] - edges[0]
        dens = -np.gradient(tail.sf(x), x) * len(scores) * width
        ax.plot(x, np.maximum(dens, 1e-3), color="#dd8452", label=f"{tail.method} tail fit")
    ax.axvline(thr, color="#c44e52", ls="--", label=f"threshold {thr:.3g}")
    ax.set_yscale("log")
    ax.set_ylim(0.5, None)
    ax.set_xlabel("raw score")
    ax.set_ylabel("windows")
    ax.legend(fontsize=8)
    ax.set_title(f"score distribution at {step:.4g} s")
    fig.tight_layout()
    fig.savefig(out / PNGS[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.linspace(float(np.quantile(scores, 0.5)), hi, 300)
    per_day = evt.SECONDS_PER_DAY / step
    ax.plot(x, tail.empirical_sf(x) * per_day, color="#4c72b0", label="empirical (calibration)")
    if tail.method in ("gpd", "exponential"):
        ax.plot(x, tail.sf(x) * per_day, color="#dd8452", label=f"{tail.method} tail")
    ax.axhline(
        s["budget_per_day"], color="grey", ls=":", label=f"budget {s['budget_per_day']:g}/day"
    )
    ax.axvline(thr, color="#c44e52", ls="--", label="threshold")
    ax.set_yscale("log")
    ax.set_xlabel("threshold (raw score)")
    ax.set_ylabel("expected alarms per instance per day")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PNGS[1], dpi=100)
    plt.close(fig)

    pc = (s.get("injected") or {}).get("per_class", {})
    fig, ax = plt.subplots(figsize=(7, 4))
    if pc:
        names = list(pc)
        ax.barh(names, [100 * (pc[c]["recall"] or 0) for c in names], color="#55a868")
        for k, c in enumerate(names):
            ax.text(1, k, f"{pc[c]['detected']}/{pc[c]['episodes']}", va="center", fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_xlabel("episode recall, %")
    else:
        ax.text(0.5, 0.5, "recall not estimated", ha="center", transform=ax.transAxes)
    ax.set_title("injected lab faults")
    fig.tight_layout()
    fig.savefig(out / PNGS[2], dpi=100)
    plt.close(fig)
