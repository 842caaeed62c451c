"""Weak labels from the rules people already run (`coredns-anomaly label`).

Two sources, one output (the webhook's label file, source `weak`, the alert name as class):

* a rule file over a dataset's history: the real Prometheus evaluates every alerting rule at the
  dataset's step (`baselines.promql.evaluate_alert_rules`: backfilled TSDB, `for:` as
  Prometheus applies it), one instance at a time, so even a rule summed over the fleet says
  which CoreDNS it fired for;
* a live Prometheus's `ALERTS{alertstate="firing"}` over a time range: what the rules it runs
  did fire. An alert there that names no `instance` cannot say which CoreDNS was anomalous and
  is dropped (counted in the report), as the webhook does.

Either way `matchers` (Prometheus syntax, webhook.matchers) choose the alerts, and this
project's own alerts never label: a model would only learn from itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..contracts.names import OWN_ALERTNAMES
from ..webhook.labels import LabelRecord, class_of_alert
from ..webhook.matchers import match_all, parse_matchers
from .series import true_runs

OWN_ALERTS = re.compile(OWN_ALERTNAMES)


@dataclass
class RuleReport:
    """What one alert name labelled."""

    episodes: int = 0
    minutes: float = 0.0
    instances: set[str] = field(default_factory=set)


@dataclass
class WeakLabels:
    records: list[LabelRecord]
    per_rule: dict[str, RuleReport]
    dropped_without_instance: int = 0
    skipped_by_matchers: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The per-rule report as Markdown."""
        lines = ["| alert | episodes | instances | labelled minutes |", "|---|---|---|---|"]
        for name, r in sorted(self.per_rule.items()):
            lines.append(f"| {name} | {r.episodes} | {len(r.instances)} | {r.minutes:.1f} |")
        if self.dropped_without_instance:
            lines.append(
                f"\n{self.dropped_without_instance} alert series named no instance and "
                "labelled nothing (an alert over the whole fleet cannot say which CoreDNS)."
            )
        if self.skipped_by_matchers:
            lines.append(f"\nNot selected by the matchers: {', '.join(self.skipped_by_matchers)}.")
        return "\n".join(lines)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(float(t), tz=timezone.utc)


def _add(
    out: WeakLabels, instance: str, alert: str, times: np.ndarray, firing: np.ndarray, step: float
) -> None:
    rep = out.per_rule.setdefault(alert, RuleReport())
    for a, b in true_runs(firing):
        # the scrape at t measured (t - step, t]: the first firing scrape's interval is in
        start, end = float(times[a]) - step, float(times[b - 1])
        out.records.append(
            LabelRecord(
                instance, _utc(start), _utc(end), "anomaly", source="weak",
                anomaly_class=class_of_alert(alert), alertname=alert,
            )
        )  # fmt: skip
        rep.episodes += 1
        rep.minutes += (end - start) / 60
        rep.instances.add(instance)


def from_rules(dataset: Path, rules_file: Path, matchers: str = "") -> WeakLabels:
    """Every alerting rule of `rules_file` evaluated by the real Prometheus over `dataset`."""
    from . import dataset as ds_mod
    from .baselines.promql import evaluate_alert_rules, rule_alerts

    selected = parse_matchers(matchers)
    ds = ds_mod.load(dataset)
    names = {r["name"]: r for r in rule_alerts(rules_file)}
    if not names:
        raise ValueError(f"{rules_file}: no alerting rules in it")
    out = WeakLabels([], {})
    for name, r in names.items():
        if OWN_ALERTS.search(name) or not match_all(selected, {**r["labels"], "alertname": name}):
            out.skipped_by_matchers.append(name)
    times = {
        i: np.sort(ds.samples.loc[ds.samples["instance"] == i, "timestamp"].unique())
        for i in ds.instances
    }
    fired = evaluate_alert_rules(ds, rules_file, times)
    for inst, per_alert in fired.items():
        for name, firing in per_alert.items():
            if name not in out.skipped_by_matchers:
                _add(out, inst, name, times[inst], firing, ds.step)
    for name in names:
        if name not in out.skipped_by_matchers:
            out.per_rule.setdefault(name, RuleReport())
    out.records.sort(key=lambda r: (r.start, r.instance, r.alertname))
    return out


def from_alerts(api, start: float, end: float, step: float, matchers: str = "") -> WeakLabels:
    """`ALERTS{alertstate="firing"}` of a live Prometheus (`api`: exporter.promclient.PrometheusAPI)
    as weak labels."""
    selected = parse_matchers(matchers)
    out = WeakLabels([], {})
    skipped: set[str] = set()
    for s in api.query_range('ALERTS{alertstate="firing"}', start, end, step):
        labels = {str(k): str(v) for k, v in s.get("metric", {}).items()}
        name = labels.get("alertname", "")
        if OWN_ALERTS.search(name) or not match_all(selected, labels):
            skipped.add(name)
            continue
        if not labels.get("instance"):
            out.dropped_without_instance += 1
            continue
        ts = np.asarray([float(v[0]) for v in s.get("values", [])])
        if not len(ts):
            continue
        # a sample every `step` while firing: a gap longer than that ends the episode
        grid = np.round((ts - ts[0]) / step).astype(int)
        firing = np.zeros(grid[-1] + 1, bool)
        firing[grid] = True
        _add(out, labels["instance"], name, ts[0] + np.arange(len(firing)) * step, firing, 0.0)
    out.skipped_by_matchers = sorted(skipped)
    out.records.sort(key=lambda r: (r.start, r.instance, r.alertname))
    return out
