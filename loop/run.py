"""Play faults into the running loop and record when each stage of the loop noticed.

A poller thread samples, about twice a second: the exporter's `coredns_anomaly` per instance,
Prometheus's alerts (pending/firing), and the webhook's stored deliveries. After the run,
`episode_events` reads, for each fault, the first time each stage reacted: that is the
timeline the demo prints and the delay the benchmark compares across rule sets.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from coredns_anomaly.contracts import names as N
from coredns_anomaly.lab import faults

from .stack import Stack

log = logging.getLogger(__name__)
OURS = N.ANOMALY_ALERT  # the generated anomaly alert (the benchmarks import this name)


@dataclass
class Episode:
    cls: str
    intensity: float
    instance: str  # the `instance` label
    start: float = 0.0  # wall clock (time.time())
    end: float = 0.0


@dataclass
class Sample:
    t: float
    anomaly: dict[str, float]
    score: dict[str, float]
    alerts: list[tuple[str, str, str]]  # (alertname, instance, state)


@dataclass
class Recorder:
    stack: Stack
    period: float = 0.5
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Recorder:
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.time()
            try:
                anomaly = self.stack.exporter_series(N.ANOMALY)
                score = self.stack.exporter_series(N.SCORE)
                alerts = [
                    (a["labels"].get("alertname", ""), a["labels"].get("instance", ""), a["state"])
                    for a in self.stack.prometheus_alerts()
                ]
                self.samples.append(Sample(t, anomaly, score, alerts))
            except Exception as exc:  # noqa: BLE001 - a missed sample is not fatal to the run
                log.debug("recorder sample failed: %s", exc)
            self._stop.wait(max(0.0, self.period - (time.time() - t)))


def play(stack: Stack, episodes: list[Episode], gap: float, duration: float, say=print) -> None:
    """Run each episode on its instance for `duration` s, then `gap` s of calm."""
    assert stack.lab is not None
    by_label = {v: k for k, v in stack.instances.items()}
    insts = {i.name: i for i in stack.lab.instances}
    for ep in episodes:
        inst = insts[by_label[ep.instance]]
        ep.start = time.time()
        knobs = faults.apply_fault(inst, ep.cls, ep.intensity)
        say(
            f"  fault {ep.cls} (intensity {ep.intensity:g}, {knobs}) on {inst.name} [{ep.instance}]"
        )
        try:
            time.sleep(duration)
        finally:
            faults.clear_fault(inst, ep.cls)
            ep.end = time.time()
        say(f"  fault {ep.cls} cleared; {gap:.0f}s of calm")
        time.sleep(gap)


def _iso(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def first(samples: list[Sample], since: float, until: float, pred) -> float | None:
    return next((s.t for s in samples if since <= s.t <= until and pred(s)), None)


def episode_events(
    ep: Episode, samples: list[Sample], deliveries: list[dict], until: float, alert: str = OURS
) -> dict:
    """Seconds from the fault's start to each stage's first reaction (None: it never did)."""
    mine = lambda name: name == alert  # noqa: E731
    firing = first(
        samples,
        ep.start,
        until,
        lambda s: any(mine(a) and i == ep.instance and st == "firing" for a, i, st in s.alerts),
    )
    raised = first(samples, ep.start, until, lambda s: s.anomaly.get(ep.instance) == 1)
    cleared = (
        first(
            samples, max(ep.end, raised or ep.end), until, lambda s: s.anomaly.get(ep.instance) == 0
        )
        if raised
        else None
    )
    delivered = resolved = None
    for d in deliveries:
        name, inst, t = (
            d["labels"].get("alertname", ""),
            d["labels"].get("instance"),
            _iso(d["received_at"]),
        )
        if not (mine(name) and inst == ep.instance and ep.start <= t <= until):
            continue
        if d["status"] == "firing" and delivered is None:
            delivered = t
        if d["status"] == "resolved" and t >= ep.end and resolved is None:
            resolved = t
    rel = lambda t: None if t is None else round(t - ep.start, 1)  # noqa: E731
    return {
        **asdict(ep), "fault_duration": round(ep.end - ep.start, 1),
        "first_anomaly": rel(raised), "alert_firing": rel(firing), "delivered": rel(delivered),
        "anomaly_cleared": rel(cleared), "resolved_delivered": rel(resolved),
    }  # fmt: skip


def other_alert_delay(
    ep: Episode, samples: list[Sample], until: float, ours_prefix: str = N.ALERT_PREFIX
) -> tuple[float | None, str]:
    """First firing of any other rule (e.g. the mixin's) on the episode's instance; the mixin
    aggregates instances away, so an alert without an instance label counts too."""
    for s in samples:
        if ep.start <= s.t <= until:
            for a, i, st in s.alerts:
                if not a.startswith(ours_prefix) and i in (ep.instance, "") and st == "firing":
                    return round(s.t - ep.start, 1), a
    return None, ""


def false_alarms(
    samples: list[Sample], episodes: list[Episode], calm_after: float, alert: str = OURS
) -> list[tuple[float, str, str]]:
    """Firing `alert`s that began outside every episode (plus its recovery grace)."""
    out, active = [], set()
    for s in samples:
        now = {(a, i) for a, i, st in s.alerts if a == alert and st == "firing"}
        for a, i in now - active:
            inside = any(
                ep.instance == i and ep.start <= s.t <= ep.end + calm_after for ep in episodes
            )
            if not inside:
                out.append((s.t, a, i))
        active = now
    return out
