"""Time from fault start to a firing alert, our generated rules vs the coredns-mixin rules, in
the real loop (issue 7). Both rule files are loaded into the same real Prometheus, which scrapes
the same real CoreDNS (for the mixin) and the exporter (for ours).

    .venv/bin/python bench/alert_delay.py [--episodes 2] [--duration 60] [--gap 40] [--classes ...]

Faults run on one instance; the other is a healthy control. A rule set's false alarms are
its alerts that start outside every episode (+ the gap after it) or on the control.
The mixin aggregates instances away, so any of its alerts during an episode counts for it.
Writes bench/results/alert_delay.json and docs/img/alert-delay.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from pathlib import Path

from coredns_anomaly.contracts.bundle import BundleMeta
from coredns_anomaly.contracts.names import FAULT_CLASSES
from coredns_anomaly.loop.demo import bench_outputs, mixin_stack, wait_scored, warm_up_seconds
from coredns_anomaly.loop.run import (
    OURS,
    Episode,
    Recorder,
    episode_events,
    other_alert_delay,
    play,
)

ROOT = Path(__file__).resolve().parents[1]


def mixin_false_alarms(samples, episodes, gap: float) -> list[tuple[float, str]]:
    out, active = [], set()
    for s in samples:
        now = {a for a, _, st in s.alerts if not a.startswith(OURS) and st == "firing"}
        for a in now - active:
            if not any(ep.start <= s.t <= ep.end + gap for ep in episodes):
                out.append((s.t, a))
        active = now
    return out


def ours_false_alarms(samples, episodes, gap: float) -> list[tuple[float, str]]:
    out, active = [], set()
    for s in samples:
        now = {i for a, i, st in s.alerts if a == OURS and st == "firing"}
        for i in now - active:
            if not any(ep.instance == i and ep.start <= s.t <= ep.end + gap for ep in episodes):
                out.append((s.t, i))
        active = now
    return out


def during_other_fault(alarms, episodes, gap: float) -> list[tuple[float, str]]:
    """The false alarms raised while a fault ran on another instance: on one 2-core host the
    instances share CPU and the upstream, so these may be real spill-over, not model noise."""
    return [
        (t, i)
        for t, i in alarms
        if any(ep.instance != i and ep.start <= t <= ep.end + gap for ep in episodes)
    ]


def _rel(p: Path) -> str:
    """A path as the results show it: relative to the project when inside it."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2, help="episodes per class")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per fault")
    ap.add_argument("--gap", type=float, default=40.0, help="calm seconds after each fault")
    ap.add_argument("--classes", default=",".join(FAULT_CLASSES))
    ap.add_argument("--seed", type=int, default=7)
    bench_outputs(ap, "alert-delay")
    args = ap.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text())["per_class"], args)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    rng = random.Random(args.seed)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    plan = [(c, round(rng.uniform(0.5, 1.0), 2)) for c in classes for _ in range(args.episodes)]
    rng.shuffle(plan)
    t0 = time.time()
    print(
        f"{len(plan)} episodes of {args.duration:.0f}s + {args.gap:.0f}s calm: ~{len(plan) * (args.duration + args.gap) / 60:.0f} min",
        flush=True,
    )
    # each fault's own alert: faults follow each other faster than the 10-minute re-arm hold
    with mixin_stack(args.workdir, ROOT / "models/default", keep_firing_for=0.0) as stack:
        sick, control = list(stack.instances.values())[:2]
        wait_scored(stack, warm_up_seconds(ROOT / "models/default") + 120)
        episodes = [Episode(c, u, sick) for c, u in plan]
        with Recorder(stack) as rec:
            time.sleep(args.gap)  # a calm stretch first: false alarms before any fault count too
            play(
                stack,
                episodes,
                args.gap,
                args.duration,
                say=lambda m: print(f"[{(time.time() - t0) / 60:5.1f} min] {m}", flush=True),
            )
        deliveries = stack.webhook_deliveries()
    rows = []
    for ep in episodes:
        ev = episode_events(ep, rec.samples, deliveries, ep.end + args.gap)
        mixin_delay, mixin_alert = other_alert_delay(ep, rec.samples, ep.end + args.gap)
        rows.append({**ev, "mixin_firing": mixin_delay, "mixin_alert": mixin_alert})
    run_hours = (rec.samples[-1].t - rec.samples[0].t) / 3600 if rec.samples else 0.0
    per_class = {}
    for c in classes:
        mine = [r for r in rows if r["cls"] == c]
        got = [r["alert_firing"] for r in mine if r["alert_firing"] is not None]
        mx = [r["mixin_firing"] for r in mine if r["mixin_firing"] is not None]
        per_class[c] = {
            "episodes": len(mine),
            "ours_detected": len(got), "ours_median_s": statistics.median(got) if got else None,
            "mixin_detected": len(mx), "mixin_median_s": statistics.median(mx) if mx else None,
        }  # fmt: skip
    meta = BundleMeta.read(ROOT / "models/default/model.json")
    fa_ours = ours_false_alarms(rec.samples, episodes, args.gap)
    fa_mixin = mixin_false_alarms(rec.samples, episodes, args.gap)
    res = {
        "settings": vars(args) | {"workdir": _rel(args.workdir), "out": _rel(args.out), "plot": _rel(args.plot)},
        "model": {"model_kind": meta.model_kind, "window": meta.window, "sha256": meta.sha256,
                  "decision_debounce_steps": meta.debounce_steps},
        "run_hours": run_hours, "per_class": per_class, "episodes": rows,
        "false_alarms": {"ours": len(fa_ours), "mixin": len(fa_mixin), "ours_detail": fa_ours, "mixin_detail": fa_mixin,
                         "ours_during_a_fault_on_the_other_instance": len(during_other_fault(fa_ours, episodes, args.gap))},
        "control_instance": control, "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"\n{'class':<20} {'ours':>14} {'mixin':>16}")
    for c, r in per_class.items():
        o = (
            f"{r['ours_median_s']:.1f}s ({r['ours_detected']}/{r['episodes']})"
            if r["ours_median_s"] is not None
            else f"never (0/{r['episodes']})"
        )
        m = (
            f"{r['mixin_median_s']:.1f}s ({r['mixin_detected']}/{r['episodes']})"
            if r["mixin_median_s"] is not None
            else f">{args.duration + args.gap:.0f}s (0/{r['episodes']})"
        )
        print(f"{c:<20} {o:>14} {m:>16}")
    print(
        f"false alarms in {run_hours:.2f} h: ours {len(fa_ours)} "
        f"({len(during_other_fault(fa_ours, episodes, args.gap))} during a fault on the other instance), "
        f"mixin {len(fa_mixin)}"
    )
    plot(per_class, args)


def plot(per_class: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cap = args.duration + args.gap
    names = list(per_class)
    ours = [
        per_class[c]["ours_median_s"] if per_class[c]["ours_median_s"] is not None else cap
        for c in names
    ]
    mixin = [
        per_class[c]["mixin_median_s"] if per_class[c]["mixin_median_s"] is not None else cap
        for c in names
    ]
    fig, ax = plt.subplots(figsize=(10, 4))
    x = range(len(names))
    for side, key, values, color, label in (
        (-0.2, "ours_median_s", ours, "C0", "coredns-anomaly (generated rules)"),
        (0.2, "mixin_median_s", mixin, "C7", "coredns-mixin (every rule has for: >= 10m)"),
    ):
        fired = [per_class[c][key] is not None for c in names]
        ax.bar([i + side for i in x], values, 0.4, label=label, color=[color if f else "white" for f in fired],
               hatch=[None if f else "//" for f in fired], edgecolor=color)  # fmt: skip
    from matplotlib.patches import Patch

    handles = [
        Patch(color="C0", label="coredns-anomaly (generated rules)"),
        Patch(color="C7", label="coredns-mixin (every rule has for: >= 10m)"),
        Patch(
            facecolor="white",
            hatch="//",
            edgecolor="k",
            label="hatched: never fired within the cap",
        ),
    ]
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("median seconds from fault start to firing alert")
    ax.set_yscale("log")
    ax.set_title(
        f"Alert delay in the real loop ({args.episodes} episodes/class, {args.duration:.0f}s faults; capped at {cap:.0f}s)"
    )
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=110)


if __name__ == "__main__":
    main()
