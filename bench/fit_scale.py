"""How long `coredns-anomaly fit` takes, and how much memory, on a fleet of N instances x D days.

    .venv/bin/python bench/fit_scale.py                          # 100 instances x 7 days at 30 s
    .venv/bin/python bench/fit_scale.py --instances 4 --days 0.5 --via dataset   # quick check

The synthetic fleet is healthy CoreDNS-like traffic built from data/lab-v1's healthy steps:

- `--via series` (default): feature rows directly (per instance a level drawn around the lab's
  healthy medians, a daily swing on the rate features, AR(1) noise of the lab's spread), as
  Series. This is how the full size runs: the dataset path replays every raw sample through
  the exporter's feature code in Python (~230 samples per scrape), which at 2M scrapes is
  hours (the measured per-scrape cost is written to the results so this can be checked).
- `--via dataset`: raw samples like the lab writes (every counter advanced by a mix of two
  healthy lab scrape intervals, scaled by a daily swing and noise, gauges jittered), written
  as a dataset and read back through `fit`'s own loading path (featurize).

Results (wall time per stage, peak RSS from resource.getrusage, the fit's figures) go to
bench/results/fit_scale.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coredns_anomaly.training.series import NORMAL, Series  # noqa: E402

DAY = 86400.0
RATE_UNITS = ("ln(1+req/s)", "ln(1+ev/s)", "ln(1+bytes)")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def lab_healthy(lab: Path) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread of each feature over data/lab-v1's healthy steps."""
    from coredns_anomaly.training.detector import as_series

    rows = np.concatenate([s.X[s.labels == NORMAL] for s in as_series(lab)])
    with np.errstate(all="ignore"):
        med = np.nanmedian(rows, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(rows - med), axis=0)
    return med, np.where(np.isfinite(mad), np.maximum(mad, 1e-3), np.nan)


def synthetic_series(n: int, days: float, step: float, lab: Path, seed: int = 0) -> list[Series]:
    from coredns_anomaly.exporter.features import FEATURE_NAMES, FEATURES

    rng = np.random.default_rng(seed)
    med, sd = lab_healthy(lab)
    T = int(days * DAY / step)
    t0 = 1.79e9
    times = t0 + np.arange(T) * step
    rate = np.array([f.unit in RATE_UNITS for f in FEATURES])
    out = []
    for i in range(n):
        level = med + 0.5 * sd * rng.normal(size=len(med))
        phase = rng.uniform(0, 2 * np.pi)
        swing = 0.3 * np.sin(2 * np.pi * times / DAY + phase)
        e = rng.normal(size=(T, len(med)))
        ar = np.empty_like(e)
        ar[0] = e[0]
        rho = 0.9
        for t in range(1, T):  # AR(1), unit variance
            ar[t] = rho * ar[t - 1] + np.sqrt(1 - rho**2) * e[t]
        X = level + sd * ar + np.where(rate, 1.0, 0.0) * swing[:, None]
        X = np.where(np.isfinite(med), X, np.nan)
        out.append(
            Series(
                f"10.0.{i // 250}.{i % 250}:9153",
                times,
                X,
                np.full(T, NORMAL, object),
                FEATURE_NAMES,
            )
        )
    return out


def synthetic_dataset(
    n: int, days: float, step: float, lab: Path, out: Path, seed: int = 0
) -> Path:
    """Raw samples: counters advance by a noisy daily-swinging mix of two healthy lab intervals."""
    import pandas as pd

    from coredns_anomaly.training import dataset as ds_mod

    rng = np.random.default_rng(seed)
    src = ds_mod.load(lab)
    s = src.samples[src.samples["instance"] == src.instances[0]].copy()
    s["key"] = s["name"].astype(str) + "{" + s["labels"].astype(str) + "}"
    wide = s.pivot_table(index="timestamp", columns="key", values="value", aggfunc="last")
    lab_lab = src.label_at(src.instances[0], wide.index.to_numpy())
    ok = np.flatnonzero((lab_lab == NORMAL)[1:] & (lab_lab == NORMAL)[:-1])
    d = np.diff(wide.to_numpy(), axis=0) / np.diff(wide.index.to_numpy())[:, None]  # per second
    good = [k for k in ok if np.all(np.nan_to_num(d[k][_counter_mask(wide.columns)]) >= 0)]
    dA, dB = np.nan_to_num(d[good[len(good) // 3]]), np.nan_to_num(d[good[2 * len(good) // 3]])
    base = wide.iloc[good[0]].to_numpy()
    keep = np.isfinite(base)
    cols, base, dA, dB = wide.columns[keep], base[keep], dA[keep], dB[keep]
    counter = _counter_mask(cols)
    names = np.array([c.split("{", 1)[0] for c in cols], object)
    labels = np.array([c.split("{", 1)[1][:-1] for c in cols], object)
    T = int(days * DAY / step)
    times = 1.79e9 + np.arange(T) * step
    parts = []
    for i in range(n):
        scale = np.exp(rng.normal(0, 0.3))  # instance's traffic level
        f = scale * np.exp(0.3 * np.sin(2 * np.pi * times / DAY + rng.uniform(0, 6.3)))
        f = f * np.exp(rng.normal(0, 0.05, T))
        w = rng.uniform(0, 1, T)
        inc = (w[:, None] * dA + (1 - w[:, None]) * dB) * (f * step)[:, None]
        vals = np.where(
            counter,
            base + np.cumsum(inc, axis=0),
            base * (1 + 0.01 * rng.normal(size=(T, len(base)))),
        )
        vals[:, names == "up"] = 1.0
        parts.append(
            pd.DataFrame(
                {
                    "timestamp": np.repeat(times, len(cols)),
                    "instance": f"10.0.0.{i}:9153",
                    "name": np.tile(names, T),
                    "labels": np.tile(labels, T),
                    "value": vals.ravel(),
                }
            )  # fmt: skip
        )
    meta = dict(src.meta, source="synthetic", step_seconds=step, preset="bench-fit-scale")
    ds = ds_mod.Dataset(
        samples=pd.concat(parts, ignore_index=True), labels=ds_mod.empty_labels(), meta=meta
    )
    ds_mod.write(ds, out)
    return out


def _counter_mask(cols) -> np.ndarray:
    return np.array(
        [c.split("{", 1)[0].endswith(("_total", "_bucket", "_sum", "_count")) for c in cols]
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--step", type=float, default=30.0)
    ap.add_argument("--via", choices=("series", "dataset"), default="series")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lab", type=Path, default=ROOT / "data/lab-v1")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/fit_scale.json")
    ap.add_argument("--workdir", type=Path, help="keep the bundle/report/dataset here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from coredns_anomaly.training.fit import FitConfig, fit, load_series

    work = args.workdir or Path(tempfile.mkdtemp(prefix="fit-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    stages: dict[str, float] = {}
    if args.via == "series":
        series = synthetic_series(args.instances, args.days, args.step, args.lab)
        stages["generate_series"] = time.monotonic() - t0
    else:
        synthetic_dataset(args.instances, args.days, args.step, args.lab, work / "dataset")
        stages["generate_dataset"] = time.monotonic() - t0
        t1 = time.monotonic()
        series = load_series([work / "dataset"])
        stages["load_featurize"] = time.monotonic() - t1
    steps = sum(len(s.times) for s in series)
    rss_data = peak_rss_mib()
    t1 = time.monotonic()
    summary = fit(series, FitConfig(epochs=args.epochs), work / "bundle", work / "report")
    stages["fit"] = time.monotonic() - t1
    result = {
        "instances": args.instances, "days": args.days, "step_seconds": args.step, "via": args.via,
        "steps": steps, "epochs_max": args.epochs, "wall_seconds": time.monotonic() - t0,
        "stages_seconds": stages, "peak_rss_mib_after_data": rss_data, "peak_rss_mib": peak_rss_mib(),
        "featurize_ms_per_scrape": (1000 * stages["load_featurize"] / steps) if "load_featurize" in stages else None,
        "fit": {k: summary[k] for k in ("threshold", "threshold_method", "expected_alarms_per_instance_day", "calibration", "healthy_instance_hours", "epochs", "seconds")},
        "tail": summary["tail"],
        "injected_recall": summary["injected"].get("recall"),
        "injected_per_class": {c: v["recall"] for c, v in summary["injected"].get("per_class", {}).items()},
        "machine": {"cpus": __import__("os").cpu_count()},
        "workdir": str(work),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("steps", "wall_seconds", "stages_seconds", "peak_rss_mib")},
            default=float,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
