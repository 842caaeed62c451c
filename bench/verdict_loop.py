"""How many false-alarm verdicts it takes to silence a recurring false alarm, and what it costs.

    .venv/bin/python bench/verdict_loop.py [--out bench/results/verdict_loop.json]

A harmless pattern recurs every night (a batch job: one metric up by 3 sigma, half the `spike`
fault's size) in a production series between real anomalies (the detector suite's synthetic
multivariate series: the loop is the detector's, not CoreDNS-specific). An engineer marks the
first k nights' alarms as false alarms (k = 0..5), the autoencoder is retrained with them, and
a new night is scored: does it still alert (3 anomalous windows in a row)? Next to it, the
debounced recall on real anomalies of a clean series, and whether the memory of judged false
alarms (exporter/suppress.py) exists yet: it needs verdicts on two occurrences.
Seeds 1-3 for the networks; writes JSON and docs/img/verdict-loop.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "training"))

from conftest import synthetic  # noqa: E402

from coredns_anomaly.training.detector import AnomalyDetector  # noqa: E402
from coredns_anomaly.training.evaluate import debounce  # noqa: E402
from coredns_anomaly.training.series import NORMAL, Series, attach_baseline  # noqa: E402

# Between the real episodes of the synthetic series ([60 + 90k, 85 + 90k)), after warm-up.
NIGHTS = (95, 185, 275, 455, 635)
TONIGHT = 365
QUIRK, LENGTH, DEBOUNCE = 3.0, 30, 3


def with_quirk(s: Series, starts, judged) -> Series:
    X, src = s.X.copy(), s.label_source.copy()
    for a in starts:
        X[a : a + LENGTH, 1] += QUIRK
        if a in judged:
            src[a : a + LENGTH] = "false_alarm"
    return attach_baseline(Series(s.instance, s.times, X, s.labels.copy(), s.feature_names, src))


def run(k: int, seed: int) -> dict:
    train = [synthetic("a", seed=1, steps=900)]
    val = [synthetic("a", seed=2, steps=500)]
    prod = with_quirk(synthetic("prod", seed=7, steps=900), NIGHTS, NIGHTS[:k])
    det = AnomalyDetector("autoencoder", window=8, filters=16, seed=seed)
    det.train(30, 64, train + [prod], validation=val)
    tonight = with_quirk(synthetic("tonight", seed=8 + seed, steps=500), (TONIGHT,), ())
    pred = det.predict([tonight])
    inside = (pred.times >= tonight.times[TONIGHT]) & (pred.times < tonight.times[TONIGHT + LENGTH])
    alerts = debounce(pred.is_anomaly, DEBOUNCE)
    clean = synthetic("clean", seed=9, steps=500)
    pc = det.predict([clean])
    real = pc.labels != NORMAL
    return {
        "judged_nights": k, "seed": seed,
        "alerts_on_a_new_night": bool(alerts[inside].any()),
        "share_of_its_windows_anomalous": float(pred.is_anomaly[inside].mean()),
        "real_recall_debounced": float(debounce(pc.is_anomaly, DEBOUNCE)[real].mean()),
        "memory": det.suppression() is not None,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/verdict_loop.json")
    ap.add_argument("--png", type=Path, default=ROOT / "docs/img/verdict-loop.png")
    args = ap.parse_args()
    rows = []
    for k in range(len(NIGHTS) + 1):
        for seed in (1, 2, 3):
            rows.append(run(k, seed))
            print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted({r["judged_nights"] for r in rows})
    fired = [
        np.mean([r["alerts_on_a_new_night"] for r in rows if r["judged_nights"] == k]) for k in ks
    ]
    rec = [
        np.mean([r["real_recall_debounced"] for r in rows if r["judged_nights"] == k]) for k in ks
    ]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(ks, fired, color="#c0392b", alpha=0.7, label="a new night alerts (share of 3 seeds)")
    ax.plot(ks, rec, "o-", color="#2457a6", label="recall on real anomalies (debounced)")
    ax.set_xlabel("nights judged as false alarms")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="center right")
    ax.set_title("Verdicts silence a recurring false alarm (autoencoder)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=100)
    print(f"wrote {args.out} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
