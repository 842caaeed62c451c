"""The feedback loop end to end on CoreDNS data: verdicts on the page -> `GET /labels` ->
`coredns-anomaly train --labels` -> a new bundle. Does the judged pattern stop alarming, and what
does it cost in recall on the test split?

    .venv/bin/python bench/verdict_loop_coredns.py [--minutes 36,47,53] [--judged 3]

The pattern: a batch job on one CoreDNS (coredns-3 of the env-soak recording, ~30 lookups/s)
sends 60 SRV lookups/s for a minute at the given minutes of the hour (default six times: 14, 19,
28, 36, 47 and 53), written into the recording's own counters (lab/patterns.py:
`coredns_dns_requests_total{type="SRV"}` and the NOERROR responses, the job's queries are
answered). The model has never seen SRV at that share, so it alarms. An engineer judges the
first `--judged` alarms false on the webhook's page (gunicorn, the real verdict form and label
export: lab/verdicts.py). With the defaults, the first three runs lie in the part of the hour
the pipeline trains on and the rest in validation and test; with `--minutes 36,47,53` every run
lies where a time split keeps it out of the weights, so only the verdicts can bring it in.

Two trainings with the same seed, the same datasets (data/lab-v1 and the recording with the
batch job) and the same settings (`--quick --only-kind autoencoder`): without and with the
label file. Compared: the alarms on every batch job, in this recording and in env-soak2 (the
same job twice, a recording neither training saw), and test-split recall, point-wise and per
episode. Writes JSON (a row per minutes x qps x verdicts) and docs/img/verdict-loop-coredns.png.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "data/envs/env-soak"
INSTANCE = "coredns-3"
TONIGHT = ROOT / "data/envs/env-soak2"  # another hour, the same job: does it still alarm?
TONIGHT_MINUTES = (35.0, 50.0)
BATCH_MINUTES = (14.0, 19.0, 28.0, 36.0, 47.0, 53.0)
JUDGED = 3  # the first three alarms get a verdict
BATCH_SECONDS, BATCH_QPS = 60.0, 60.0


def with_batch_job(
    src: Path, out: Path, minutes: tuple[float, ...] = BATCH_MINUTES, qps: float = BATCH_QPS
) -> tuple[Path, list[tuple[float, float]]]:
    """A copy of the recording whose INSTANCE runs the batch job; the job's (start, end)s."""
    from coredns_anomaly.lab import patterns
    from coredns_anomaly.training import dataset as ds_mod

    ds = ds_mod.load(src)
    runs = patterns.batch_runs(ds, minutes, BATCH_SECONDS)
    try:
        ds_mod.write(patterns.with_batch_job(ds, INSTANCE, runs, qps), out)
    except ValueError as exc:
        raise SystemExit(f"{src}: {exc}") from exc
    return out, runs


def verdicts_via_webhook(runs: list[tuple[float, float]], out: Path) -> Path:
    """The engineer's work: each judged alarm delivered by Alertmanager, marked a false alarm
    on the page, exported by GET /labels (the webhook under gunicorn, on a temporary store)."""
    from coredns_anomaly.lab import verdicts

    # the exporter's debounce after the job starts, its 30 s of calm after it ends
    judged = [verdicts.Judged(INSTANCE, a + 6, b + 30) for a, b in runs]
    out.write_text(verdicts.judge_on_a_new_server(out.parent / "webhook", judged))
    return out


def train(datasets: list[Path], labels: Path | None, out: Path, seed: int) -> dict:
    """`coredns-anomaly train` into out/ (reused when a finished run is there: --workdir)."""
    if (out / "model" / "model.json").is_file() and (out / "results" / "results.json").is_file():
        return json.loads((out / "results" / "results.json").read_text())
    cmd = [sys.executable, "-m", "coredns_anomaly", "train", "--quick", "--seed", str(seed)]
    cmd += ["--only-kind", "autoencoder", "--out", str(out / "model"), "--report", str(out)]
    for d in datasets:
        cmd += ["--dataset", str(d)]
    if labels is not None:
        cmd += ["--labels", str(labels)]
    with open(out.parent / f"{out.name}.log", "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return json.loads((out / "results" / "results.json").read_text())


def test_figures(res: dict) -> dict:
    """The exported autoencoder's test-split figures, as the report states them."""
    t = res["models"]["autoencoder"]
    return {
        "recall_pointwise": t["pointwise"]["recall"],
        "precision_pointwise": t["pointwise"]["precision"],
        "f1_pointwise": t["pointwise"]["f1"],
        "episode_recall": t["episode_recall"],
        "false_alarms": t["false_alarms"],
        "rule": t["rule"],
        "label_sources": t["train_info"].get("label_sources"),
    }


def batch_alarms(model: Path, recording: Path, runs: list[tuple[float, float]]) -> list[bool]:
    """Per batch job: did the bundle, run through the exporter's Engine, alarm during it?"""
    from coredns_anomaly.training import dataset as ds_mod
    from coredns_anomaly.training.replay import alarmed_during, replay

    return alarmed_during(replay(ds_mod.load(recording), model)[INSTANCE], runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/verdict_loop_coredns.json")
    ap.add_argument("--png", type=Path, default=ROOT / "docs/img/verdict-loop-coredns.png")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--qps", type=float, default=BATCH_QPS, help="the batch job's SRV lookups/s")
    ap.add_argument("--minutes", default=",".join(f"{m:g}" for m in BATCH_MINUTES))
    ap.add_argument("--judged", type=int, default=JUDGED, help="alarms judged false (the first)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    minutes = tuple(float(m) for m in args.minutes.split(","))
    wd = args.workdir or Path(tempfile.mkdtemp(prefix="verdict-loop-"))
    wd.mkdir(parents=True, exist_ok=True)
    rec, runs = with_batch_job(RECORDING, wd / "env-soak-batch", minutes, args.qps)
    new, new_runs = with_batch_job(TONIGHT, wd / "env-soak2-batch", TONIGHT_MINUTES, args.qps)
    print(
        f"[1/4] batch job written into {rec} ({len(runs)} runs on {INSTANCE}) and {new}", flush=True
    )
    labels = verdicts_via_webhook(runs[: args.judged], wd / "labels.csv")
    print(f"[2/4] {args.judged} verdicts exported by GET /labels to {labels}", flush=True)
    data = [ROOT / "data/lab-v1", rec]
    before = train(data, None, wd / "without", args.seed)
    print("[3/4] trained without verdicts", flush=True)
    after = train(data, labels, wd / "with", args.seed)
    print("[4/4] trained with verdicts", flush=True)

    def alarms(model: Path) -> dict:
        return {"recording": batch_alarms(model, rec, runs),
                "new_recording": batch_alarms(model, new, new_runs)}  # fmt: skip

    row = {
        "recording": str(RECORDING.relative_to(ROOT)), "new_recording": str(TONIGHT.relative_to(ROOT)),
        "instance": INSTANCE, "batch_minutes": list(minutes), "new_batch_minutes": list(TONIGHT_MINUTES),
        "batch_qps": args.qps, "judged": args.judged, "seed": args.seed,
        "shipped": {"alarms": alarms(ROOT / "models/default")},
        "without": {**test_figures(before), "alarms": alarms(wd / "without/model")},
        "with": {**test_figures(after), "alarms": alarms(wd / "with/model")},
    }  # fmt: skip
    row["recall_drop_pointwise"] = (
        row["without"]["recall_pointwise"] - row["with"]["recall_pointwise"]
    )
    row["episode_recall_drop"] = row["without"]["episode_recall"] - row["with"]["episode_recall"]
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results.setdefault("runs", [])
    results["runs"] = [
        r
        for r in results["runs"]
        if (r["batch_qps"], r["judged"], r["batch_minutes"])
        != (args.qps, args.judged, list(minutes))
    ]
    results["runs"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(row, indent=1))
    plot(results["runs"], args.png)
    return 0


def plot(runs: list[dict], out: Path) -> None:
    """Per run (batch size, verdicts): which batch jobs alarm under each bundle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 2.4 * len(runs)), squeeze=False)
    for ax, row in zip(axes[:, 0], runs, strict=True):
        rows = (("shipped", "shipped bundle"), ("without", "retrained, no verdicts"),
                ("with", f"retrained, {row['judged']} verdicts"))  # fmt: skip
        for y, (key, _) in enumerate(reversed(rows)):
            a = row[key]["alarms"]
            judged_here = row["judged"] if key == "with" else 0  # verdicts only feed "with"
            pts = [
                (m, h, k < judged_here)
                for k, (m, h) in enumerate(zip(row["batch_minutes"], a["recording"], strict=True))
            ]
            pts += [
                (60 + m, h, False)
                for m, h in zip(row["new_batch_minutes"], a["new_recording"], strict=True)
            ]
            for m, hit, judged in pts:
                ax.scatter(m, y, s=110, marker="X" if hit else "o", color="#c0392b" if hit else "#27ae60",
                           edgecolors="k" if judged else "none", linewidths=1.5)  # fmt: skip
        ax.axvline(59, color="k", lw=0.8, ls=":")
        ax.set_yticks(range(3), [name for _, name in reversed(rows)], fontsize=8)
        ax.set_ylim(-0.6, 2.6)
        w, v = row["without"], row["with"]
        ax.set_title(
            f"batch job of {row['batch_qps']:g} SRV/s on {row['instance']}, "
            f"{len(row['batch_minutes'])} times; test recall {w['recall_pointwise']:.3f} without, "
            f"{v['recall_pointwise']:.3f} with verdicts",
            fontsize=9,
        )
    axes[-1, 0].set_xlabel(
        "minute (right of the line: a new recording, +60); X alarms, o quiet, ringed = judged",
        fontsize=8,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
