"""Alerts on the exporter's series, derived from the model bundle, and meta-alerts on the detector.

Why these numbers (docs/rules.md has the long form):
- warning on `coredns_anomaly == 1`: the score is raw / the threshold chosen on validation, so 1
  *is* the model's validated decision; the exporter holds an anomaly until its score stayed
  below 1 for `decision_clear_steps` (30 s), so the rule adds no threshold of its own (a
  `score >= 1` condition would resolve and re-fire on every dip inside one anomaly).
- critical: classifier and siamese raw scores are bounded by 1, so the published score cannot
  exceed 1 / threshold; critical sits halfway between 1 and that ceiling (the model is clearly
  past its decision, not hovering on it). Unbounded scores (autoencoder, ensemble) go critical
  at 2, twice the validated threshold, with `keep_firing_for` the exporter's calm span.
- `unless ... coredns_anomaly_learning == 1`: while the exporter is still learning an
  instance's own normal (its warm-up), the score is published for inspection only.
- warning `keep_firing_for` = REARM_SECONDS (10 min; `rules generate --keep-firing-for`): once
  an anomaly alert fired for an instance, it stays one alert until the instance has been calm
  that long. After a fault, a CoreDNS often sits in a changed state for minutes (a cache left
  full of a flood's names keeps evicting, the Go heap stays grown, more sockets open) and its
  score hovers around 1 until the baseline relearns it: without the hold that recovery pages
  again and again, and on the lab's soaks it made almost all of the false alarms. The cost:
  `resolved` arrives 10 minutes after the recovery, and a second fault on the same instance
  inside those 10 minutes does not page anew (the alert is still firing). bench/transfer.py
  counts false alarms at this alert level too; 10 minutes was the shortest of 0, 2, 5, 10 and
  15 that kept every tuning soak within 1 per instance per 24 h (docs/transfer.md).
- `for:` = one model step: the exporter already applies the validated debounce
  (decision_debounce_steps) before it sets `coredns_anomaly`, so the rule only asks the verdict
  to hold one more step (at Prometheus's 15-30 s evaluation interval: two consecutive
  evaluations). Longer holds would outlast the 30-70 s faults, which is exactly how the
  coredns-mixin's 10-minute `for:` misses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from coredns_anomaly.contracts import names as N

from .model import ModelFacts, RulesError
from .render import anchor, duration

GROUP = "coredns-anomaly"
# The warning alert's re-arm hold (module doc): one alert per incident and its recovery.
REARM_SECONDS = 600.0
META_GROUP = "coredns-anomaly-detector"


@dataclass(frozen=True)
class Options:
    job: str = "coredns-anomaly"  # the exporter's scrape job (honor_labels: true)
    coredns_job: str = "coredns"  # the job scraping CoreDNS itself, for the unwatched check
    runbook_url_base: str = "docs/runbooks.md"
    critical_score: float | None = None  # None: derived from the bundle (see module doc)
    rearm_seconds: float = REARM_SECONDS  # the warning's keep_firing_for; 0 = none


def critical_score(m: ModelFacts, override: float | None = None) -> float:
    """The score at which the anomaly alert turns critical."""
    if override is not None:
        if not (math.isfinite(override) and override > 1):
            raise RulesError(
                f"--critical-score must be > 1 (1 is the warning level), got {override}"
            )
        if override >= m.max_score:
            raise RulesError(
                f"--critical-score {override:g} can never fire: a {m.kind} model's score "
                f"peaks at 1 / threshold = {m.max_score:.3f}"
            )
        return override
    if math.isinf(m.max_score):
        return 2.0
    return math.floor((1 + m.max_score) / 2 * 100) / 100  # 2 decimals, rounded down: reachable


def for_seconds(m: ModelFacts) -> float:
    """The anomaly alert's hold: one model step (the exporter has debounced already)."""
    return m.step_seconds


def _runbook(o: Options, alert: str) -> str:
    return f"{o.runbook_url_base}#{anchor(alert)}"


def type_template(job: str) -> str:
    """Alert annotation: the exporter's likely anomaly type for this instance (the webhook shows it)."""
    q = f"topk(1, {N.TYPE}{{job='{job}',instance='%s'}} == 1)"
    return f'{{{{ with printf "{q}" $labels.instance | query }}}}{{{{ . | first | label "type" }}}}{{{{ else }}}}unknown{{{{ end }}}}'


def features_template(job: str) -> str:
    """Alert annotation: the top features, comma-separated, largest contribution first."""
    q = f"sort_desc({N.FEATURE_CONTRIBUTION}{{job='{job}',instance='%s'}})"
    return (
        f'{{{{ range $i, $s := printf "{q}" $labels.instance | query }}}}'
        "{{ if $i }}, {{ end }}{{ $s.Labels.feature }}{{ end }}"
    )


ANOMALY_TEXT = {
    "summary": "CoreDNS @instance@ does not behave like the normal traffic the model learned.",
    "description": "The coredns-anomaly @kind@ model (bundle @bundle@) scores CoreDNS @instance@ "
    "at @value2@ (>= 1 anomalous, >= @crit@ critical) for at least @hold@. "
    "Likely anomaly type: @type@. Top features: @features@.",
    "score": "@value3@",
    "anomaly_type": "@type@",
    "top_features": "@features@",
}


def templates(job: str) -> dict[str, str]:
    """What each @marker@ becomes in a rule: Prometheus template code."""
    return {
        "instance": "{{ $labels.instance }}",
        "value": "{{ $value | humanizePercentage }}",
        "value2": '{{ $value | printf "%.2f" }}',
        "value3": '{{ $value | printf "%.3f" }}',
        "type": type_template(job),
        "features": features_template(job),
        "loaded": "{{ $labels.sha256 }}",
    }


def fill(text: str, values: dict[str, str]) -> str:
    """Replace @name@ markers: template code for the rule file, concrete text for its tests."""
    for key, val in values.items():
        text = text.replace(f"@{key}@", val)
    return text


def anomaly_rules(m: ModelFacts, o: Options) -> list[dict[str, Any]]:
    crit = critical_score(m, o.critical_score)
    hold = duration(for_seconds(m))
    sel = f'job="{o.job}"'
    static = {"kind": m.kind, "bundle": m.sha256[:12], "crit": f"{crit:g}", "hold": hold}
    rules = []
    for severity, level in (("warning", 1.0), ("critical", crit)):
        ann = {k: fill(fill(v, static), templates(o.job)) for k, v in ANOMALY_TEXT.items()}
        ann["runbook_url"] = _runbook(o, N.ANOMALY_ALERT)
        # warning: the exporter's verdict alone (it already debounced, and it holds an anomaly
        # through short dips below 1, so the alert does not flap); critical: the score too,
        # kept firing over the same calm span the exporter waits before it clears
        above = "" if severity == "warning" else f" >= {level:g}"
        rule = {
            "alert": N.ANOMALY_ALERT,
            "expr": f"{N.SCORE}{{{sel}}}{above}\n"
            f"and\n{N.ANOMALY}{{{sel}}} == 1\n"
            # an instance whose own normal is still being learned never alerts
            f"unless on (job, instance)\n{N.LEARNING}{{{sel}}} == 1",
            "for": hold,
            "labels": {"severity": severity},
            "annotations": ann,
        }
        if severity == "critical" and m.clear_steps > 1:
            rule["keep_firing_for"] = duration(m.clear_steps * m.step_seconds)
        if severity == "warning" and o.rearm_seconds > 0:
            rule["keep_firing_for"] = duration(o.rearm_seconds)
        rules.append(rule)
    return rules


def _meta(alert: str, expr: str, hold: str, summary: str, description: str, o: Options) -> dict:
    """A meta-alert; its texts keep their @markers@ (meta_annotations fills them)."""
    return {
        "alert": alert,
        "expr": expr,
        "for": hold,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": _runbook(o, alert),
        },
    }


def meta_rules(m: ModelFacts, o: Options) -> list[dict[str, Any]]:
    """The detector watching itself. Warning only: a blind detector is not a DNS outage."""
    j = f'job="{o.job}"'
    fill_hold = duration(max(300.0, 10 * m.window * m.step_seconds))
    return [
        _meta(
            "CoreDNSAnomalyExporterAbsent", f"absent(up{{{j}}})", "5m",
            f"No coredns-anomaly exporter is scraped under job {o.job}.",
            f"Prometheus has no target for job {o.job}: no anomaly verdicts reach it at all.", o,
        ),
        _meta(
            "CoreDNSAnomalyExporterDown", f"up{{{j}}} == 0", "5m",
            "The coredns-anomaly exporter @instance@ is down.",
            "Prometheus cannot scrape the exporter @instance@; the CoreDNS "
            "instances it judges have no anomaly verdicts.", o,
        ),
        _meta(
            "CoreDNSAnomalyTargetDown", f"{N.TARGET_UP}{{{j}}} == 0", "5m",
            "The exporter cannot scrape CoreDNS @instance@.",
            "The exporter's scrapes of CoreDNS @instance@ fail (see "
            "coredns_anomaly_target_errors_total by reason); it publishes no score for it.", o,
        ),
        _meta(
            "CoreDNSAnomalyTargetUnwatched",
            f'up{{job="{o.coredns_job}"}} == 1\nunless on (instance)\n'
            f"{N.TARGET_UP}{{{j}}}",
            "10m",
            "CoreDNS @instance@ is not judged by any coredns-anomaly exporter.",
            f"Prometheus scrapes CoreDNS @instance@ (job {o.coredns_job}) but no "
            "exporter reports it: a targets file, shard or selector leaves it out.", o,
        ),
        _meta(
            "CoreDNSAnomalyModelNotLoaded",
            f"up{{{j}}} == 1\nunless on (job, instance)\n{N.MODEL_INFO}{{{j}}}",
            "5m",
            "The exporter @instance@ runs without a model.",
            "The exporter @instance@ answers scrapes but publishes no "
            "coredns_anomaly_model_info: no bundle loaded, so nothing is judged.", o,
        ),
        _meta(
            "CoreDNSAnomalyModelReloadFailed",
            f"{N.MODEL_LAST_RELOAD_SUCCESSFUL}{{{j}}} == 0", "0s",
            "The exporter @instance@ refused a new model bundle.",
            "The last hot reload on @instance@ failed; the exporter keeps judging "
            "with the previous bundle until a good one loads (its log names what is wrong).", o,
        ),
        _meta(
            "CoreDNSAnomalyRulesStale",
            f'{N.MODEL_INFO}{{{j},sha256!="{m.sha256}"}}', "15m",
            "The exporter @instance@ runs another model than these rules were made for.",
            "The loaded bundle is @loaded@; these rules were generated for "
            f"{m.sha256}. Their critical level and `for:` come from the bundle: regenerate them "
            "with `coredns-anomaly rules generate`.", o,
        ),
        _meta(
            "CoreDNSAnomalyWindowsNotFilling",
            f"{N.WINDOW_FILL_RATIO}{{{j}}} < 1\nand\n"
            f"{N.TARGET_UP}{{{j}}} == 1",
            fill_hold,
            "The model's window for CoreDNS @instance@ stopped filling.",
            f"The window ({m.window} steps of {m.step_seconds:.3g} s) of CoreDNS "
            "@instance@ is @value@ full although scrapes "
            f"work; warm-up takes {m.window * m.step_seconds:.0f} s. Steps are missing (masked "
            "features, overruns), so no verdicts are published.", o,
        ),
        _meta(
            "CoreDNSAnomalyExporterOverloaded",
            f"rate({N.STEP_OVERRUNS_TOTAL}{{{j}}}[5m])\n  /\n"
            f"rate({N.STEPS_TOTAL}{{{j}}}[5m]) > 0.1",
            "10m",
            "The exporter @instance@ cannot keep up with the model's step.",
            "@value@ of steps on @instance@ take longer "
            f"than the model's {m.step_seconds:.3g} s step; windows fill late and verdicts lag. "
            "Shard the targets over more replicas (--shard).", o,
        ),
    ]  # fmt: skip


def groups(m: ModelFacts, o: Options) -> list[dict[str, Any]]:
    meta = meta_rules(m, o)
    for rule in meta:
        rule["annotations"] = {k: fill(v, templates(o.job)) for k, v in rule["annotations"].items()}
    return [
        {"name": GROUP, "rules": anomaly_rules(m, o)},
        {"name": META_GROUP, "rules": meta},
    ]
