"""The exporter's /metrics: a custom collector over snapshots of the engine (docs/exporter.md).

A collector, not module-level gauges, so a series exists only while its fact does: a target
that left the fleet or is down has no score, a calm target has no type or explanation.

/metrics never waits on a running step. Each step publishes an immutable `Snapshot` of the
per-target series when it ends; a scrape renders the latest one. (It used to hold the step's
lock, so a page that was slow to parse made the exporter's own /metrics slow too.) If no step
has completed for a while (`STALE_STEPS`), the scores are withheld rather than shown as live:
a stalled exporter must look like one, not like a calm fleet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coredns_anomaly.contracts import names as N

if TYPE_CHECKING:
    from .engine import Engine
    from .service import Exporter

# Scores are withheld once the last completed step is older than this many model steps plus
# that step's own duration (a slow but working exporter keeps its scores).
STALE_STEPS = 3


@dataclass(frozen=True)
class Row:
    """One target on the landing page."""

    instance: str
    up: bool
    fill_ratio: float
    score: float | None
    anomaly: bool | None
    type: str


@dataclass(frozen=True)
class Snapshot:
    generation: int  # Engine.steps_done when it was built
    engine_id: int  # id() of the engine it was built from (a reload swaps engines in tests)
    verdicts: tuple[Metric, ...] = ()  # score, anomaly, type, contributions
    others: tuple[Metric, ...] = ()  # up, errors, fill, learning, grace, missing, duration
    rows: tuple[Row, ...] = field(default=())


def build_snapshot(engine: Engine) -> Snapshot:
    """The per-target series of the engine as it is now (call with the step's lock held)."""

    def g(n: str, d: str, labels: tuple[str, ...] = ("instance",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(n, d, labels=list(labels))

    anomaly = g(N.ANOMALY, "1 while the model calls the latest window anomalous, else 0")
    score = g(N.SCORE, "anomaly score normalised so that >= 1 is anomalous")
    typ = g(
        N.TYPE, "likely anomaly class (nearest centroid), 1 while anomalous", ("instance", "type")
    )
    contrib = g(
        N.FEATURE_CONTRIBUTION,
        "top features driving the score while anomalous",
        ("instance", "feature"),
    )
    fill = g(N.WINDOW_FILL_RATIO, "steps in the window / window length (warm-up)")
    learning = g(
        N.LEARNING,
        "1 while the exporter is still learning this instance's normal (no alarms), else 0",
    )
    grace = g(
        N.RESTART_GRACE,
        "1 while a restarted CoreDNS's cold start (empty cache, fresh process) raises no "
        "anomaly, else 0",
    )
    missing = g(
        N.FEATURE_MISSING,
        "1 for each feature whose source metrics this instance's page lacks (not scored)",
        ("instance", "feature"),
    )
    held = g(
        N.HELD_BACK,
        "1 while the score is over 1 but the window looks like a false alarm engineers judged "
        "(no alarm; bundle suppression), else 0",
    )
    up = g(N.TARGET_UP, "1 if the last scrape of the target worked and parsed")
    dur = g(N.TARGET_SCRAPE_DURATION_SECONDS, "duration of the last scrape")
    errors = CounterMetricFamily(
        N.TARGET_ERRORS_TOTAL, "scrape and parse errors by reason", labels=["instance", "reason"]
    )
    rows = []
    for name, st in sorted(engine.states.items()):
        fill.add_metric([name], st.fill_ratio)
        learning.add_metric([name], 1.0 if st.learning else 0.0)
        grace.add_metric([name], 1.0 if st.in_restart_grace else 0.0)
        for feat in st.missing_features:
            missing.add_metric([name, feat], 1.0)
        up.add_metric([name], 1.0 if st.up else 0.0)
        dur.add_metric([name], st.scrape_duration)
        for reason, n in st.errors.items():
            errors.add_metric([name, reason], n)
        v = st.verdict
        rows.append(
            Row(name, st.up, st.fill_ratio, v and v.score, v and v.anomaly, v.type if v else "")
        )
        if v is None:
            continue
        anomaly.add_metric([name], 1.0 if v.anomaly else 0.0)
        held.add_metric([name], 1.0 if st.held_back else 0.0)
        score.add_metric([name], v.score)
        if v.anomaly and v.type:
            typ.add_metric([name, v.type], 1.0)
        for feat, c in v.top if v.anomaly else ():
            contrib.add_metric([name, feat], c)
    return Snapshot(
        engine.steps_done, id(engine), (anomaly, score, typ, contrib),
        (fill, learning, grace, missing, held, up, dur, errors), tuple(rows),
    )  # fmt: skip


def current_snapshot(x: Exporter) -> Snapshot:
    """The latest snapshot; rebuilt here only if the engine moved on since and no step holds
    the lock right now (tests and tools that drive the engine directly), never waiting."""
    snap, engine = x.snapshot, x.engine
    moved = snap.generation != engine.steps_done or snap.engine_id != id(engine)
    if moved and x.lock.acquire(blocking=False):
        try:
            snap = x.snapshot = build_snapshot(x.engine)
        finally:
            x.lock.release()
    return snap


def is_stale(x: Exporter) -> bool:
    """True once no step has completed for STALE_STEPS model steps (plus the last one's time)."""
    if not x.last_step_end:
        return False
    age = time.monotonic() - x.last_step_end
    return age > STALE_STEPS * x.step_seconds + x.last_step_seconds


class ExporterCollector(Collector):
    def __init__(self, exporter: Exporter) -> None:
        self.x = exporter

    def collect(self) -> Iterator:
        x = self.x
        snap = current_snapshot(x)
        if not is_stale(x):
            yield from snap.verdicts
        yield from snap.others
        yield from self._health(x, len(snap.rows))

    def _health(self, x: Exporter, n_targets: int) -> Iterator:
        yield GaugeMetricFamily(
            N.TARGETS, "targets this replica owns (after sharding)", value=n_targets
        )
        last = x.engine.last if x.engine else None
        yield GaugeMetricFamily(
            N.STEP_DURATION_SECONDS,
            "wall time of the last step (scrape + features + inference)",
            value=x.last_step_seconds,
        )
        yield GaugeMetricFamily(
            N.INFERENCE_DURATION_SECONDS,
            "wall time of the last batched invoke",
            value=last.inference if last else 0.0,
        )
        yield CounterMetricFamily(N.STEPS_TOTAL, "steps run", value=x.steps)
        yield CounterMetricFamily(
            N.STEP_OVERRUNS_TOTAL, "steps that took longer than the model's step", value=x.overruns
        )
        reloads = CounterMetricFamily(
            N.MODEL_RELOADS_TOTAL, "model hot reloads (file change or SIGHUP)", labels=["result"]
        )
        for result in ("success", "failure"):
            reloads.add_metric([result], x.reloads[result])
        yield reloads
        yield GaugeMetricFamily(
            N.MODEL_LAST_RELOAD_SUCCESSFUL,
            "0 after a refused bundle, until a good one loads",
            value=1.0 if x.last_reload_ok else 0.0,
        )
        if x.engine:
            b = x.engine.bundle
            info = GaugeMetricFamily(
                N.MODEL_INFO,
                "the loaded model bundle",
                labels=["kind", "version", "sha256", "window", "step_seconds", "runtime"],
            )
            info.add_metric(
                [b.kind, b.version, b.sha256, str(b.window), f"{b.step_seconds:g}", x.runtime_name],
                1.0,
            )
            yield info
            yield GaugeMetricFamily(
                N.MODEL_STEP_SECONDS,
                "the model's step; rules derive `for:` from it",
                value=b.step_seconds,
            )
