"""Transfer benchmark: the shipped model on CoreDNS environments it never saw (issue 12).

    .venv/bin/python bench/transfer.py --env data/envs/env-small --env data/envs/env-autopath ...

Every environment's recording is replayed, scrape by scrape, through the exporter's own Engine
(the code that runs in production: features, per-instance baselines, LiteRT, debounce), all
instances of an environment in one fleet, exactly as they were scraped. Nothing of these
environments was used to train the model or to choose its threshold: pass only held-out
recordings. Figures per environment, counted only after each instance's warm-up:

- false alarms: alarm onsets outside every labelled episode (and its grace steps), per healthy
  instance-hour, with the 95% Poisson upper bound per 24 h; also split into aftermath (starting
  within AFTERMATH_SECONDS after a fault ended: the recordings hold a fault every minute or two,
  a cluster rarely does) and steady (the rest, per hour of healthy traffic outside aftermaths);
- the same at two levels: the exporter's verdicts (`coredns_anomaly` rising edges), and the
  alerts the generated rules raise from them, which keep firing for the re-arm hold
  (rules/anomaly.py REARM_SECONDS, 10 min) after the exporter clears: what pages a person.
  At the alert level an episode that starts while the alert is still firing counts as
  detected but raises no new page (`episodes_while_alarmed`, reported);
- alarms raised while an instance was still learning (must be 0);
- episode recall over the nine fault classes and the median delay in steps.

The model before per-instance baselines (one lab-fitted scaler, kept in bench/models/) is
scored side by side on the same steps, by the rule that exporter used (standardise with the
bundle's mean/scale, same window rule, threshold and debounce).

With `--loeo DIR`, each environment is scored instead by a model that `coredns-anomaly train`
fits on the lab datasets plus every *other* --env (leave one environment out, kept in DIR), so
the shipped model can learn from every environment while each figure still comes from an
environment its model never saw.

Writes bench/results/transfer.json and docs/img/transfer.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from coredns_anomaly.contracts.bundle import BundleMeta
from coredns_anomaly.exporter.baseline import standardize
from coredns_anomaly.exporter.bundle import window_ok
from coredns_anomaly.exporter.features import ONE_STEP, FeatureState
from coredns_anomaly.exporter.runtime import Runtime
from coredns_anomaly.rules.anomaly import REARM_SECONDS
from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.evaluate import evaluate_decisions
from coredns_anomaly.training.featurize import instance_pages
from coredns_anomaly.training.replay import replay
from coredns_anomaly.training.report import poisson_upper

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench.transfer")
# An alarm that starts within this long after an injected fault ended is counted apart, as
# aftermath (a cache refilling, memory kept, a backlog draining), from the steady false alarms.
AFTERMATH_SECONDS = 120.0


def replay_global_scaler(ds: ds_mod.Dataset, model: Path) -> dict[str, dict[str, np.ndarray]]:
    """The exporter before per-instance baselines: one lab-fitted mean/scale for every CoreDNS."""
    meta = json.loads((model / "model.json").read_text())
    rt = Runtime((model / "model.tflite").read_bytes(), int(meta["window"]), 30)
    mean, scale = np.asarray(meta["scaler"]["mean"]), np.asarray(meta["scaler"]["scale"])
    clip, W = float(meta["scaler"].get("clip", 10.0)), int(meta["window"])
    thr, k = float(meta["decision"]["threshold"]), int(meta.get("decision_debounce_steps", 1))
    out = {}
    for inst in ds.instances:
        state, times, rows = FeatureState(ONE_STEP), [], []
        for ts, page in instance_pages(ds, inst):
            times.append(ts)
            rows.append(state.update(page, ts) if page is not None else np.full(30, np.nan))
        X = np.asarray(rows)
        missing = np.isnan(X).all(axis=1)
        score = np.full(len(X), np.nan)
        idx = [t for t in range(W - 1, len(X)) if window_ok(missing[t - W + 1 : t + 1])]
        if idx:
            Z = np.stack([standardize(X[t - W + 1 : t + 1], mean, scale, clip) for t in idx])
            score[idx] = rt.run(Z)["score"] / thr
        anomaly, streak = np.zeros(len(X), bool), 0
        for t in range(len(X)):
            streak = streak + 1 if score[t] >= 1.0 else 0
            anomaly[t] = streak >= k
        out[inst] = {"times": np.asarray(times), "score": score, "anomaly": anomaly}
    return out


def kept_firing(alarm: np.ndarray, times: np.ndarray, hold: float) -> np.ndarray:
    """The alert as the generated rules raise it from the exporter's verdicts: firing while
    `coredns_anomaly` is 1 and for `hold` seconds after it last was (keep_firing_for)."""
    out, last = alarm.copy(), -np.inf
    for i, (a, t) in enumerate(zip(alarm, times, strict=True)):
        if a:
            last = t
        elif t - last <= hold:
            out[i] = True
    return out


def figures(
    ds: ds_mod.Dataset, runs: dict, scored: dict[str, np.ndarray], step: float, hold: float = 0.0
) -> dict:
    """Alarms, recall and delay over the steps in `scored` (after warm-up), per environment;
    with `hold` > 0, of the alert that keeps firing that long after the exporter clears."""
    T, N, L, A = [], [], [], []
    for inst, r in runs.items():
        m = scored[inst]
        T.append(r["times"][m])
        N.append(np.full(int(m.sum()), inst, object))
        L.append(ds.label_at(inst, r["times"][m]))
        A.append(kept_firing(r["anomaly"][m], r["times"][m], hold) if hold else r["anomaly"][m])
    times, inst, labels, alarm = map(np.concatenate, (T, N, L, A))
    aftermath = int(np.ceil(AFTERMATH_SECONDS / step))
    res = evaluate_decisions(times, inst, labels, alarm, step, aftermath_steps=aftermath)
    h, n = res["normal_hours"], res["false_alarms"]
    sh, sn = res["steady_normal_hours"], res["steady_false_alarms"]
    return {
        "healthy_instance_hours": h,
        "false_alarms": n,
        "false_alarms_per_hour": n / h if h else None,
        "false_alarms_per_24h_upper95": poisson_upper(n) / h * 24 if h else None,
        "steady_instance_hours": sh,
        "steady_false_alarms": sn,
        "steady_false_alarms_per_hour": sn / sh if sh else None,
        "steady_false_alarms_per_24h_upper95": poisson_upper(sn) / sh * 24 if sh else None,
        "aftermath_alarms": res["aftermath_alarms"],
        "episodes": (eps := sum(c["episodes"] for c in res["per_class"].values())),
        "episode_recall": res["episode_recall"] if eps else None,  # a healthy soak has none
        "recall_per_class": {c: v["recall_episode"] for c, v in res["per_class"].items()},
        "median_delay_steps": res["median_delay_steps"],
        "episodes_while_alarmed": res["episodes_while_alarmed"],
        "pointwise": res["pointwise"],
    }


def bench_env(
    path: Path,
    model: Path,
    old_model: Path | None,
    step: float | None = None,
    hold: float = REARM_SECONDS,
) -> dict:
    ds = ds_mod.load(path)
    if step and step > ds.step * 1.01:  # as a Prometheus scraping every `step` s holds it
        ds = ds_mod.resample_to(ds, step)
    t0 = time.perf_counter()
    new = replay(ds, model)
    step = ds.step  # the card's (a resampled 15 s recording has 14 and 16 s gaps)
    warm = {i: ~r["learning"] for i, r in new.items()}
    learning_alarms = int(sum((r["anomaly"] & r["learning"]).sum() for r in new.values()))
    learning_steps = int(sum(r["learning"].sum() for r in new.values()))
    row = {
        "environment": path.name,
        "card": {k: ds.meta.get(k) for k in ("environment", "coredns_version", "step_seconds")},
        "step_seconds": step,
        "instances": len(new),
        "warmup_seconds_median": float(np.median([learning_steps / len(new) * step])),
        "alarms_while_learning": learning_alarms,
        "new": figures(ds, new, warm, step),
        # as the generated rules page: kept firing for the re-arm hold (rules/anomaly.py)
        "new_alert": figures(ds, new, warm, step, hold),
        "alert_hold_seconds": hold,
        "seconds": time.perf_counter() - t0,
    }
    if old_model is not None:
        old = replay_global_scaler(ds, old_model)
        row["old"] = figures(ds, old, warm, step)  # the same steps as the new model's
        row["old_alert"] = figures(ds, old, warm, step, hold)
    return row


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["environment"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for key, label, dx in (
        ("old", "before (lab scaler), exporter", -0.3),
        ("new", "per-instance baseline, exporter", -0.1),
        ("old_alert", "before, as alerts (re-arm hold)", 0.1),
        ("new_alert", "per-instance baseline, as alerts", 0.3),
    ):
        fa = [(r.get(key) or {}).get("false_alarms_per_hour") or 0.0 for r in rows]
        rec = [(r.get(key) or {}).get("episode_recall") or 0.0 for r in rows]
        axes[0].bar(x + dx, fa, 0.2, label=label)
        axes[1].bar(x + dx, rec, 0.2, label=label)
    axes[0].set_ylabel("false alarms per healthy instance-hour")
    axes[0].axhline(1 / 24, color="k", ls=":", lw=1, label="target: 1 per 24 h")
    axes[1].set_ylabel("episode recall (9 fault classes)")
    axes[1].axhline(0.9, color="k", ls=":", lw=1, label="target 0.9")
    axes[1].set_ylim(0, 1.05)
    for ax in axes:
        ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle("Environments never used in training or threshold choice, after warm-up")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", type=Path, action="append", required=True, help="held-out dataset")
    ap.add_argument("--model", type=Path, default=ROOT / "models/default")
    ap.add_argument("--old-model", type=Path, default=ROOT / "bench/models/lab-scaler-v1")
    ap.add_argument("--no-old", action="store_true", help="skip the model before this change")
    ap.add_argument(
        "--warmup",
        type=float,
        help="score with this warm-up (s) instead of the bundle's: how short may it be?",
    )
    ap.add_argument(
        "--loeo",
        type=Path,
        metavar="DIR",
        help="leave one environment out: score each --env with a model trained (into DIR, "
        "reused when present) on --train-dataset plus every other --env",
    )
    ap.add_argument(
        "--train-dataset",
        type=Path,
        action="append",
        default=[],
        help="with --loeo: always in training (default data/lab-v1 and data/lab-v2)",
    )
    ap.add_argument(
        "--step",
        type=float,
        help="score each --env as a Prometheus scraping every STEP s holds it (resampled)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/transfer.json")
    ap.add_argument("--png", type=Path, default=ROOT / "docs/img/transfer.png")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("coredns_anomaly.exporter").setLevel(logging.WARNING)
    model = args.model
    if args.warmup:
        model = with_warmup(args.model, args.warmup, Path(tempfile.mkdtemp()))
    rows = []
    for i, env in enumerate(args.env, 1):
        log.info("[%d/%d] %s", i, len(args.env), env)
        used = model
        if args.loeo:
            others = [e for e in args.env if e != env]
            base = args.train_dataset or [ROOT / "data/lab-v1", ROOT / "data/lab-v2"]
            used = train_without(env, [*base, *others], args.loeo / env.name)
            if args.warmup:
                used = with_warmup(used, args.warmup, Path(tempfile.mkdtemp()))
        rows.append(bench_env(env, used, None if args.no_old else args.old_model, args.step))
        r = rows[-1]
        r["model"] = _rel(used)
        for key in ("old", "new", "old_alert", "new_alert"):
            f = r.get(key)
            if f:
                log.info(
                    "  %-9s alarms/h %.3f (%d in %.2f h), recall %.3f, delay %s, learning alarms %d",
                    key, f["false_alarms_per_hour"] or 0, f["false_alarms"],
                    f["healthy_instance_hours"], _nan(f["episode_recall"]), f["median_delay_steps"],
                    r["alarms_while_learning"],
                )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"model": _rel(args.model), "loeo": bool(args.loeo), "environments": rows},
            indent=1,
            default=str,
        )
    )
    plot(rows, args.png)
    print(table(rows))
    write_transfer_md(ROOT / "bench/results", ROOT / "docs/transfer.md")
    return 0


def _rel(p: Path) -> str:
    """A path as the docs show it: relative to the project when inside it."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def write_transfer_md(results_dir: Path, out: Path) -> None:
    """docs/transfer.md: every transfer run's table (bench/results/transfer*.json) and PNG."""
    parts = [
        "# Transfer: environments none of the training data came from",
        "",
        "Generated by bench/transfer.py (`make transfer`) from bench/results/transfer*.json; "
        "the method is in that script's docstring. Each row counts after every instance's "
        "warm-up; `alarms while learning` must be 0.",
        "",
        "No environment here trained a network or chose a threshold. The exporter's decision "
        "and baseline settings (learn only below 0.7, relearn after 10 minutes of alarm "
        "beside the old normal, the spread at least the last 2 minutes', the 30 s hold, 45 s "
        "of confirmation at 15 and 30 s) were compared on env-soak, env-soak2, env-step15 and "
        "the four left-out environments, so their rows are not fully held out (env-soak2 was "
        "the held-out row until the settings of 2026-12-03 were compared on it). env-soak3 "
        "(release 1.11.4, 8 instances, 1.5 h) was recorded before those settings were chosen "
        "and scored once, after; its alarms were then studied (most come in the quarter hour "
        "after a fault on the same instance), which led to the alerts' 10-minute re-arm hold. "
        "That hold was chosen on the tuning recordings only (env-soak, env-soak2, env-step15), "
        "and **env-soak4 (6 instances, 1.2 h, recorded after that study) is the held-out row "
        "for it.** Rows 'as alerts' count what the generated rules page: the exporter's "
        "verdicts kept firing for the hold (rules/anomaly.py).",
        "",
        "The restart grace (a restarted CoreDNS raises no new anomaly below score 2 for 120 s, "
        "exporter/engine.py) was chosen on env-soak3 and env-soak4, which were then studied: "
        "at 30 s, 4 of their false alerts came within 75 s of a restart. **env-day was recorded "
        "while that choice was made, unseen, and scored once, after: 36 instances, ~2 h, no "
        "faults, a benign "
        "event (restart, reload, rate change, burst) every 10-20 minutes per instance** "
        "(transfer-day*.json; at 2 s from the recording, which is not in git: 45 MB). "
        "Replayed once more without the grace (RESTART_GRACE_SECONDS = 0), the same day gives "
        "5 false alerts at 15 s and 17 at 30 s instead of 1 and 1.",
        "",
    ]
    for path in sorted(results_dir.glob("transfer*.json")):
        doc = json.loads(path.read_text())
        rows = doc["environments"]
        how = "leave one environment out" if doc.get("loeo") else f"model {doc['model']}"
        learning = sum(r["alarms_while_learning"] for r in rows)
        parts += [f"## {path.name} ({how})", "", table(rows), "", f"Alarms while learning: {learning}.", ""]  # fmt: skip
        png = {"transfer.json": "transfer.png"}.get(path.name, path.stem + ".png")
        if (out.parent / "img" / png).is_file():
            parts += [f"![{path.stem}](img/{png})", ""]
    out.write_text("\n".join(parts))


def train_without(env: Path, datasets: list[Path], out: Path) -> Path:
    """The `coredns-anomaly train` bundle of `datasets` (which must not hold `env`), trained
    once into out/model; its report in out/report."""
    assert env not in datasets
    model = out / "model"
    if (model / "model.json").is_file():
        log.info("  reusing %s", model)
        return model
    cmd = [sys.executable, "-m", "coredns_anomaly", "train", "--out", str(model)]
    cmd += ["--export-kind", "autoencoder"]  # as the shipped bundles (Makefile: models)
    cmd += ["--report", str(out / "report")]
    for d in datasets:
        cmd += ["--dataset", str(d)]
    log.info("  training without %s: %s", env.name, " ".join(cmd[3:]))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return model


def with_warmup(model: Path, seconds: float, tmp: Path) -> Path:
    """A copy of the bundle whose baselines warm up for `seconds` (the network is unchanged)."""
    shutil.copytree(model, tmp / "model", ignore=shutil.ignore_patterns("keras"))
    meta = BundleMeta.read(tmp / "model" / "model.json")
    baseline = {**meta.baseline, "warmup_seconds": seconds}
    dataclasses.replace(meta, baseline=baseline).write(tmp / "model" / "model.json")
    return tmp / "model"


def table(rows: list[dict]) -> str:
    lines = [
        "| environment | step | healthy inst-h | model | false alarms (per h) | per inst. per 24 h | 95% upper, per 24 h | of which aftermath | steady: inst-h, alarms (per h) | episode recall | of which already alerting | median delay, steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for key, name in (
            ("old", "before: lab scaler"),
            ("new", "per-instance baseline"),
            ("old_alert", "before, as alerts"),
            ("new_alert", "per-instance baseline, as alerts"),
        ):
            f = r.get(key)
            if not f:
                continue
            lines.append(
                f"| {r['environment']} | {r['step_seconds']:.0f} s | {f['healthy_instance_hours']:.2f} | {name} | "
                f"{f['false_alarms']} ({(f['false_alarms_per_hour'] or 0):.2f}) | {24 * (f['false_alarms_per_hour'] or 0):.1f} | {(f['false_alarms_per_24h_upper95'] or 0):.1f} | "
                f"{f['aftermath_alarms']} | {f['steady_instance_hours']:.2f} h, {f['steady_false_alarms']} ({(f['steady_false_alarms_per_hour'] or 0):.2f}) | "
                f"{_recall(f)} | {f.get('episodes_while_alarmed', '')} | {f['median_delay_steps']} |"
            )
    return "\n".join(lines)


def _nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _recall(f: dict) -> str:
    if f["episode_recall"] is None:
        return "no faults"
    return f"{f['episode_recall']:.3f} ({f['episodes']})"


if __name__ == "__main__":
    sys.exit(main())
