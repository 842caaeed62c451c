"""The exporter's /metrics: a custom collector over the engine's state (docs/exporter.md).

A collector, not module-level gauges, so a series exists only while its fact does: a target
that left the fleet or is down has no score, a calm target has no type or explanation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import Exporter

P = "coredns_anomaly"


class ExporterCollector(Collector):
    def __init__(self, exporter: Exporter) -> None:
        self.x = exporter

    def collect(self) -> Iterator:
        x = self.x
        with x.lock:  # a consistent view: never half of one step and half of the next
            states = list(x.engine.states.items()) if x.engine else []
            yield from self._targets(states)
            yield from self._health(x, len(states))

    def _targets(self, states) -> Iterator:
        g = lambda n, d, labels=("instance",): GaugeMetricFamily(f"{P}{n}", d, labels=list(labels))  # noqa: E731
        anomaly = g("", "1 while the model calls the latest window anomalous, else 0")
        score = g("_score", "anomaly score normalised so that >= 1 is anomalous")
        typ = g(
            "_type",
            "likely anomaly class (nearest centroid), 1 while anomalous",
            ("instance", "type"),
        )
        contrib = g(
            "_feature_contribution",
            "top features driving the score while anomalous",
            ("instance", "feature"),
        )
        fill = g("_window_fill_ratio", "steps in the window / window length (warm-up)")
        learning = g(
            "_learning",
            "1 while the exporter is still learning this instance's normal (no alarms), else 0",
        )
        missing = g(
            "_feature_missing",
            "1 for each feature whose source metrics this instance's page lacks (not scored)",
            ("instance", "feature"),
        )
        up = g("_target_up", "1 if the last scrape of the target worked and parsed")
        dur = g("_target_scrape_duration_seconds", "duration of the last scrape")
        errors = CounterMetricFamily(
            f"{P}_target_errors", "scrape and parse errors by reason", labels=["instance", "reason"]
        )
        for name, st in states:
            fill.add_metric([name], st.fill_ratio)
            learning.add_metric([name], 1.0 if st.learning else 0.0)
            for feat in st.missing_features:
                missing.add_metric([name, feat], 1.0)
            up.add_metric([name], 1.0 if st.up else 0.0)
            dur.add_metric([name], st.scrape_duration)
            for reason, n in st.errors.items():
                errors.add_metric([name, reason], n)
            v = st.verdict
            if v is None:
                continue
            anomaly.add_metric([name], 1.0 if v.anomaly else 0.0)
            score.add_metric([name], v.score)
            if v.anomaly and v.type:
                typ.add_metric([name, v.type], 1.0)
            for feat, c in v.top if v.anomaly else ():
                contrib.add_metric([name, feat], c)
        yield from (anomaly, score, typ, contrib, fill, learning, missing, up, dur, errors)  # fmt: skip

    def _health(self, x: Exporter, n_targets: int) -> Iterator:
        yield GaugeMetricFamily(
            f"{P}_targets", "targets this replica owns (after sharding)", value=n_targets
        )
        last = x.engine.last if x.engine else None
        yield GaugeMetricFamily(
            f"{P}_step_duration_seconds",
            "wall time of the last step (scrape + features + inference)",
            value=x.last_step_seconds,
        )
        yield GaugeMetricFamily(
            f"{P}_inference_duration_seconds",
            "wall time of the last batched invoke",
            value=last.inference if last else 0.0,
        )
        yield CounterMetricFamily(f"{P}_steps", "steps run", value=x.steps)
        yield CounterMetricFamily(
            f"{P}_step_overruns", "steps that took longer than the model's step", value=x.overruns
        )
        reloads = CounterMetricFamily(
            f"{P}_model_reloads", "model hot reloads (file change or SIGHUP)", labels=["result"]
        )
        for result in ("success", "failure"):
            reloads.add_metric([result], x.reloads[result])
        yield reloads
        yield GaugeMetricFamily(
            f"{P}_model_last_reload_successful",
            "0 after a refused bundle, until a good one loads",
            value=1.0 if x.last_reload_ok else 0.0,
        )
        if x.engine:
            b = x.engine.bundle
            info = GaugeMetricFamily(
                f"{P}_model_info",
                "the loaded model bundle",
                labels=["kind", "version", "sha256", "window", "step_seconds", "runtime"],
            )
            info.add_metric(
                [b.kind, b.version, b.sha256, str(b.window), f"{b.step_seconds:g}", x.runtime_name],
                1.0,
            )
            yield info
            yield GaugeMetricFamily(
                f"{P}_model_step_seconds",
                "the model's step; rules derive `for:` from it",
                value=b.step_seconds,
            )
