"""`coredns-anomaly demo`: the README's first five minutes, the whole loop for real.

Starts the loop (stack.py), waits until the exporter scores every instance, plays a short
fault sequence on one CoreDNS while the other stays healthy as a control, then prints the
timeline (fault, first `coredns_anomaly` = 1, alert firing, delivery at the webhook,
resolution) and writes a report with a plot.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from coredns_anomaly.contracts import names as N
from coredns_anomaly.rules.anomaly import REARM_SECONDS

from .run import Episode, Recorder, episode_events, false_alarms, play
from .stack import Stack, StackSettings

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
# Faults confined to the faulted instance's own upstream path and CPU. A dnsperf-driven attack
# (random_subdomain, query_flood) also loads the shared upstream and this 2-core machine, and
# the control instance then sees it too (bench/alert_delay.py measures that spill-over).
DEMO_FAULTS = (("upstream_servfail", 0.8), ("upstream_latency", 0.8), ("cpu_starvation", 0.8))


@dataclass
class DemoSettings:
    workdir: Path
    model: Path
    faults: tuple[tuple[str, float], ...] = DEMO_FAULTS
    duration: float = 30.0
    gap: float = 90.0  # > the model window plus the 30 s of calm that end an anomaly
    calm: float = 10.0  # healthy seconds after warm-up before the first fault
    # The warning's re-arm hold, off: the demo's faults come every 90 s on one instance, and the
    # production hold (10 min) would make them one alert that resolves 10 minutes later; the
    # demo shows each fault's own alert and its resolution.
    keep_firing_for: float = 0.0


def anomaly_rule_file(model: Path, out_dir: Path, keep_firing_for: float | None = None) -> Path:
    """The rules generated from the bundle by the real `coredns-anomaly rules generate`;
    `keep_firing_for` overrides the warning's 10-minute re-arm hold (rules/anomaly.py)."""
    cmd = [sys.executable, "-m", "coredns_anomaly", "rules", "generate", "--model", str(model), "--out", str(out_dir)]  # fmt: skip
    if keep_firing_for is not None:
        cmd += ["--keep-firing-for", f"{keep_firing_for:g}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out_dir / "coredns-anomaly.rules.yml"


def mixin_stack(
    workdir: Path, model: Path, seed: int = 1, keep_firing_for: float | None = None
) -> Stack:
    """The benchmarks' loop (bench/alert_delay.py, false_alarm_soak.py): the bundle's generated
    rules beside the community mixin's (rules/coredns_mixin.yml); start it with `with`."""
    workdir.mkdir(parents=True, exist_ok=True)
    ours = anomaly_rule_file(model, workdir / "rules", keep_firing_for)
    rule_files = [ours, ROOT / "rules/coredns_mixin.yml"]
    return Stack(StackSettings(workdir, model, rule_files, seed=seed))


def bench_outputs(ap: argparse.ArgumentParser, name: str) -> None:
    """A loop benchmark's outputs: --workdir runs/NAME, --out bench/results/NAME.json (with
    underscores), --plot docs/img/NAME.png, and --replot to redraw the plot from --out only."""
    ap.add_argument("--workdir", type=Path, default=ROOT / "runs" / name)
    ap.add_argument(
        "--out", type=Path, default=ROOT / "bench/results" / f"{name.replace('-', '_')}.json"
    )
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/img" / f"{name}.png")
    ap.add_argument("--replot", action="store_true", help="only redraw the plot from --out")


def wait_scored(stack: Stack, timeout: float) -> None:
    """Until every instance is scored and its own baseline learned (alarms possible)."""
    want = set(stack.instances.values())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        learning = stack.exporter_series(N.LEARNING)
        if want <= set(stack.exporter_series(N.ANOMALY)) and all(
            learning.get(i) == 0.0 for i in want
        ):
            return
        time.sleep(1)
    raise RuntimeError(f"the exporter did not score and learn {sorted(want)} within {timeout:.0f}s")


def warm_up_seconds(model: Path) -> float:
    """How long a new instance is learning before it can alarm (the bundle's warm-up)."""
    from coredns_anomaly.contracts.bundle import BundleMeta

    return float(BundleMeta.read(model / "model.json").baseline["warmup_seconds"])


def run_demo(s: DemoSettings, say=print) -> dict:
    s.workdir.mkdir(parents=True, exist_ok=True)
    rules = anomaly_rule_file(s.model, s.workdir / "rules", s.keep_firing_for)
    t0 = time.time()
    say(
        f"starting the loop in {s.workdir} (lab CoreDNS x2, exporter, Prometheus, Alertmanager, webhook)"
    )
    with Stack(StackSettings(s.workdir, s.model, [rules])) as stack:
        labels = stack.instances
        sick, control = list(labels.values())[:2]
        say(
            f"  up in {time.time() - t0:.0f}s. Feedback page: {stack.url('webhook')}/  (user {stack.webhook_user}, password in {s.workdir / 'webhook-password'})"
        )
        say(f"  Prometheus: {stack.url('prometheus')}/alerts   exporter: {stack.url('exporter')}/")
        if s.keep_firing_for < REARM_SECONDS:
            say(
                f"  (the demo's rules keep an alert firing {s.keep_firing_for:g} s after the "
                f"exporter clears, not the production {REARM_SECONDS / 60:g} minutes, so each "
                "fault 90 s apart shows its own alert and resolution)"
            )
        warm = warm_up_seconds(s.model)
        say(
            f"  the exporter learns each CoreDNS's own normal first ({warm:.0f} s, as on day one"
            " in your cluster) ..."
        )
        wait_scored(stack, warm + 120)
        episodes = [Episode(cls, u, sick) for cls, u in s.faults]
        with Recorder(stack) as rec:
            time.sleep(s.calm)
            play(stack, episodes, s.gap, s.duration, say)
        until = time.time()
        deliveries = stack.webhook_deliveries()
        events = [
            episode_events(ep, rec.samples, deliveries, min(until, ep.end + s.gap))
            for ep in episodes
        ]
        fa = false_alarms(rec.samples, episodes, s.gap)
        report = {
            "instances": {"faulted": sick, "control": control},
            "episodes": events,
            "false_alarms": [
                {"t": round(t - rec.samples[0].t, 1), "alert": a, "instance": i} for t, a, i in fa
            ],
            "control_max_score": max(
                (smp.score.get(control, 0.0) for smp in rec.samples), default=0.0
            ),
            "webhook": stack.url("webhook"),
            "run_seconds": round(time.time() - t0, 1),
        }
        plot_timeline(rec.samples, episodes, events, sick, control, s.workdir / "timeline.png")
    (s.workdir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    write_report(report, s.workdir)
    print_timeline(report, say)
    return report


def _fmt(v: float | None) -> str:
    return "never" if v is None else f"+{v:.1f}s"


def print_timeline(report: dict, say=print) -> None:
    say("\ntimeline (seconds after each fault started):")
    for e in report["episodes"]:
        say(f"  {e['cls']} on {e['instance']}:")
        say(f"    {N.ANOMALY} = 1 ........ {_fmt(e['first_anomaly'])}")
        say(f"    alert firing in Prometheus . {_fmt(e['alert_firing'])}")
        say(f"    delivered to the webhook ... {_fmt(e['delivered'])}")
        say(f"    fault cleared .............. +{e['fault_duration']:.1f}s")
        say(f"    {N.ANOMALY} = 0 ........ {_fmt(e['anomaly_cleared'])}")
        say(f"    resolved at the webhook .... {_fmt(e['resolved_delivered'])}")
    say(f"  control instance {report['instances']['control']}: max score {report['control_max_score']:.3f}, "
        f"false alarms {len(report['false_alarms'])}")  # fmt: skip


def write_report(report: dict, wd: Path) -> None:
    rows = "\n".join(
        f"| {e['cls']} | {_fmt(e['first_anomaly'])} | {_fmt(e['alert_firing'])} | {_fmt(e['delivered'])} "
        f"| +{e['fault_duration']:.0f}s | {_fmt(e['anomaly_cleared'])} | {_fmt(e['resolved_delivered'])} |"
        for e in report["episodes"]
    )
    (wd / "report.md").write_text(
        "# coredns-anomaly demo\n\n"
        f"Faults on `{report['instances']['faulted']}`; `{report['instances']['control']}` stayed healthy "
        f"(max score {report['control_max_score']:.3f}, false alarms: {len(report['false_alarms'])}).\n\n"
        f"| fault | {N.ANOMALY} = 1 | alert firing | at the webhook | fault cleared | back to 0 | resolved at the webhook |\n"
        "|---|---|---|---|---|---|---|\n" + rows + "\n\n![timeline](timeline.png)\n"
    )


def plot_timeline(samples, episodes, events, sick: str, control: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not samples:
        return
    t0 = samples[0].t
    fig, ax = plt.subplots(figsize=(10, 4))
    for inst, style in ((sick, "C3"), (control, "C0")):
        pts = [(smp.t - t0, smp.score[inst]) for smp in samples if inst in smp.score]
        if pts:
            ax.plot(*zip(*pts, strict=True), color=style, lw=1.2, label=f"score {inst}")
    for ep, ev in zip(episodes, events, strict=True):
        ax.axvspan(ep.start - t0, ep.end - t0, color="C3", alpha=0.12)
        ax.text(
            ep.start - t0,
            ax.get_ylim()[1] if ax.get_ylim()[1] < 50 else 1.2,
            ep.cls,
            fontsize=8,
            va="bottom",
        )
        for key, marker in (("alert_firing", "v"), ("delivered", "x")):
            if ev[key] is not None:
                ax.plot(ep.start - t0 + ev[key], 1.0, marker, color="k", ms=8)
    ax.axhline(1.0, color="k", ls=":", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("seconds")
    ax.set_ylabel(f"{N.SCORE} (>= 1 anomalous)")
    ax.set_title("demo: faults (shaded), alert firing (v) and delivered to the webhook (x)")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
