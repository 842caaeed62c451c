"""promtool unit tests for the generated rules: realistic input series, firing and quiet cases.

Every alert gets a sick instance (expected to fire, with its exact labels and annotations)
and a healthy one beside it (must not appear), plus a check before the `for:` hold is over or
after the fault ends. Inputs are what Prometheus would scrape every 15 s: counters that grow at
realistic rates, histogram buckets, the exporter's gauges. Expected annotation values are
computed here with the same arithmetic Prometheus uses (linear counters give exact rates).
"""

from __future__ import annotations

import math
from typing import Any

from coredns_anomaly.contracts import names as N
from coredns_anomaly.contracts.signals import SIGNALS, Signal

from .anomaly import ANOMALY_TEXT, Options, critical_score, fill, for_seconds, meta_rules
from .classic import annotation_texts
from .model import ModelFacts
from .render import anchor, duration, seconds

INTERVAL = 15  # seconds between samples, a common scrape interval
SICK, HEALTHY, LEARNING = "10.0.0.10:9153", "10.0.0.11:9153", "10.0.0.12:9153"
EXPORTERS = ("coredns-anomaly-0:9096", "coredns-anomaly-1:9096")
BUCKETS = (
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.024,
    2.048,
    4.096,
    8.192,
)  # fmt: skip  (CoreDNS's duration buckets)


def _labels(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _series(name: str, labels: dict[str, str], values: list[float | None]) -> dict[str, str]:
    text = " ".join("_" if v is None else f"{v:.12g}" for v in values)
    return {"series": _labels(name, labels), "values": text}


def _gauge(value: float, n: int) -> list[float | None]:
    return [value] * n


def _counter(rates: list[float], start: float = 100_000) -> list[float | None]:
    """Cumulative counts sampled every INTERVAL for per-sample rates (per second)."""
    out, v = [], start
    for r in rates:
        out.append(v)
        v += r * INTERVAL
    return out


def _alert(labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": annotations}


def _pct(v: float) -> str:
    """Prometheus's humanizePercentage."""
    return f"{v * 100:.4g}%"


# -- the anomaly alert and the meta-alerts ----------------------------------------------------


def anomaly_tests(m: ModelFacts, o: Options, rules_file: str) -> dict[str, Any]:
    crit = critical_score(m, o.critical_score)
    hold = duration(for_seconds(m))
    top = math.inf if math.isinf(m.max_score) else m.max_score
    warn_score = round(1 + (crit - 1) / 2, 2)  # between the two levels
    crit_score = round(min(crit + 0.2, (crit + top) / 2), 2)  # above critical, still reachable
    kind = m.anomaly_types[0] if m.anomaly_types else "upstream_servfail"
    feats = list(m.feature_names[:3])
    j = {"job": o.job}
    k = math.ceil(for_seconds(m) / INTERVAL - 1e-9)  # evaluations the `for:` hold spans
    # the critical alert keeps firing over the exporter's calm span (keep_firing_for)
    kept = math.ceil(m.clear_steps * m.step_seconds / INTERVAL - 1e-9) if m.clear_steps > 1 else 0
    # the warning keeps firing for the re-arm hold once the exporter clears (keep_firing_for)
    rearm = math.ceil(o.rearm_seconds / INTERVAL - 1e-9)
    # samples: quiet x2, warning-level x1, critical-level x(k + 2), quiet x(2 + longest hold)
    calm = max(kept, rearm)
    scores = [0.31, 0.42, warn_score] + [crit_score] * (k + 2) + [0.35, 0.3] + [0.3] * calm
    flags = [0, 0] + [1] * (k + 3) + [0, 0] + [0] * calm
    n = len(scores)
    present = [None if f == 0 else 1 for f in flags]
    series = [
        _series(N.SCORE, {**j, "instance": SICK}, scores),
        _series(N.ANOMALY, {**j, "instance": SICK}, flags),
        _series(N.TYPE, {**j, "instance": SICK, "type": kind}, present),
        _series(
            N.SCORE,
            {**j, "instance": HEALTHY},
            [0.2, 0.25] * (n // 2) + [0.2] * (n % 2),
        ),
        _series(N.ANOMALY, {**j, "instance": HEALTHY}, [0] * n),
        # still learning its own normal: its score is shown, but it never alerts
        _series(N.SCORE, {**j, "instance": LEARNING}, [crit_score] * n),
        _series(N.ANOMALY, {**j, "instance": LEARNING}, [1] * n),
        _series(N.LEARNING, {**j, "instance": LEARNING}, [1] * n),
    ]
    for rank, f in enumerate(feats):
        vals = [None if p is None else round(4.0 - rank, 1) for p in present]
        series.append(_series(N.FEATURE_CONTRIBUTION, {**j, "instance": SICK, "feature": f}, vals))  # fmt: skip

    def expected(severity: str, score: float) -> dict[str, Any]:
        static = {"kind": m.kind, "bundle": m.sha256[:12], "crit": f"{crit:g}", "hold": hold}
        values = {"instance": SICK, "value2": f"{score:.2f}", "value3": f"{score:.3f}",
                  "type": kind, "features": ", ".join(feats)}  # fmt: skip
        ann = {k: fill(fill(v, static), values) for k, v in ANOMALY_TEXT.items()}
        ann["runbook_url"] = f"{o.runbook_url_base}#{anchor(N.ANOMALY_ALERT)}"
        return _alert({**j, "instance": SICK, "severity": severity}, ann)

    def at(i: int) -> str:
        return f"{i * INTERVAL}s"

    warn = expected("warning", crit_score if k else warn_score)
    first_calm = 5 + k  # the first sample where coredns_anomaly is 0 again
    checks = [
        # the first anomalous evaluation: pending only while the `for:` hold runs
        {"eval_time": at(2), "alertname": N.ANOMALY_ALERT, "exp_alerts": [] if k else [warn]},
        # warning fires; critical (pending since sample 3) not yet; the healthy one never
        {"eval_time": at(2 + k), "alertname": N.ANOMALY_ALERT, "exp_alerts": [warn]},
        {"eval_time": at(3 + k), "alertname": N.ANOMALY_ALERT,
         "exp_alerts": [expected("warning", crit_score), expected("critical", crit_score)]},
        # the model calls the window normal again: each alert keeps firing for its own
        # keep_firing_for (the critical one the exporter's calm span, the warning the re-arm
        # hold), with the value it last had, then resolves
        *({"eval_time": at(first_calm + i), "alertname": N.ANOMALY_ALERT,
           "exp_alerts": [expected(sev, crit_score) for sev, hold_evals in
                          (("warning", rearm), ("critical", kept)) if i < hold_evals]}
          for i in sorted({0, kept - 1, kept, rearm - 1} - {-1}) if i < calm),
        {"eval_time": at(first_calm + calm), "alertname": N.ANOMALY_ALERT, "exp_alerts": []},
    ]  # fmt: skip
    return {"interval": f"{INTERVAL}s", "input_series": series, "alert_rule_test": checks}


def _meta_case(
    m: ModelFacts, o: Options, alert: str, series: list[dict], firing: list[tuple]
) -> dict:
    """One meta-alert's test: quiet at the start, then `firing` = [(labels, marker values)]
    expected three minutes after the rule's `for:` hold has run out."""
    rule = next(r for r in meta_rules(m, o) if r["alert"] == alert)
    exp = []
    for labels, values in firing:
        ann = {k: fill(v, values) for k, v in rule["annotations"].items()}
        exp.append(_alert({**labels, "severity": "warning"}, ann))
    at = int(seconds(rule["for"])) + 180
    return {
        "interval": f"{INTERVAL}s",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": "0s", "alertname": alert, "exp_alerts": []},
            {"eval_time": f"{at - at % INTERVAL}s", "alertname": alert, "exp_alerts": exp},
        ],
    }


def meta_tests(m: ModelFacts, o: Options) -> list[dict[str, Any]]:
    n = 4 * 40  # 40 minutes of samples: longer than any meta-alert's hold + 3 minutes
    j = {"job": o.job}
    e0, e1 = ({**j, "instance": e} for e in EXPORTERS)
    info = {"kind": m.kind, "sha256": m.sha256, "step_seconds": f"{m.step_seconds:g}",
            "version": "0.1.0", "window": str(m.window)}  # fmt: skip
    other = {**info, "sha256": "0" * 64}
    cases = [
        _meta_case(m, o, "CoreDNSAnomalyExporterAbsent",
                   [_series("up", {"job": o.coredns_job, "instance": SICK}, _gauge(1, n))],
                   [(j, {})]),
        _meta_case(m, o, "CoreDNSAnomalyExporterDown",
                   [_series("up", e0, [1, 1] + _gauge(0, n - 2)), _series("up", e1, _gauge(1, n))],
                   [(e0, {"instance": EXPORTERS[0]})]),
        _meta_case(m, o, "CoreDNSAnomalyTargetDown",
                   [_series(N.TARGET_UP, {**j, "instance": SICK}, [1] + _gauge(0, n - 1)),
                    _series(N.TARGET_UP, {**j, "instance": HEALTHY}, _gauge(1, n))],
                   [({**j, "instance": SICK}, {"instance": SICK})]),
        _meta_case(m, o, "CoreDNSAnomalyTargetUnwatched",
                   [_series("up", {"job": o.coredns_job, "instance": SICK}, _gauge(1, n)),
                    _series("up", {"job": o.coredns_job, "instance": HEALTHY}, _gauge(1, n)),
                    _series(N.TARGET_UP, {**j, "instance": HEALTHY}, _gauge(1, n))],
                   [({"job": o.coredns_job, "instance": SICK}, {"instance": SICK})]),
        _meta_case(m, o, "CoreDNSAnomalyModelNotLoaded",
                   [_series("up", e0, _gauge(1, n)), _series("up", e1, _gauge(1, n)),
                    _series(N.MODEL_INFO, {**e1, **info}, _gauge(1, n))],
                   [(e0, {"instance": EXPORTERS[0]})]),
        _meta_case(m, o, "CoreDNSAnomalyModelReloadFailed",
                   [_series(N.MODEL_LAST_RELOAD_SUCCESSFUL, e0, [1, 1] + _gauge(0, n - 2)),
                    _series(N.MODEL_LAST_RELOAD_SUCCESSFUL, e1, _gauge(1, n))],
                   [(e0, {"instance": EXPORTERS[0]})]),
        _meta_case(m, o, "CoreDNSAnomalyRulesStale",
                   [_series(N.MODEL_INFO, {**e0, **other}, _gauge(1, n)),
                    _series(N.MODEL_INFO, {**e1, **info}, _gauge(1, n))],
                   [({**e0, **other}, {"instance": EXPORTERS[0], "loaded": "0" * 64})]),
        _meta_case(m, o, "CoreDNSAnomalyWindowsNotFilling",
                   [_series(N.WINDOW_FILL_RATIO, {**j, "instance": SICK}, _gauge(0.5, n)),
                    _series(N.TARGET_UP, {**j, "instance": SICK}, _gauge(1, n)),
                    _series(N.WINDOW_FILL_RATIO, {**j, "instance": HEALTHY}, _gauge(1, n)),
                    _series(N.TARGET_UP, {**j, "instance": HEALTHY}, _gauge(1, n))],
                   [({**j, "instance": SICK}, {"instance": SICK, "value": _pct(0.5)})]),
        _meta_case(m, o, "CoreDNSAnomalyExporterOverloaded",
                   [_series(N.STEPS_TOTAL, e0, _counter(_gauge(0.5, n))),
                    _series(N.STEP_OVERRUNS_TOTAL, e0, _counter(_gauge(0.1, n))),
                    _series(N.STEPS_TOTAL, e1, _counter(_gauge(0.5, n))),
                    _series(N.STEP_OVERRUNS_TOTAL, e1, _counter(_gauge(0, n)))],
                   [(e0, {"instance": EXPORTERS[0], "value": _pct(0.1 * 15 / (0.5 * 15))})]),
    ]  # fmt: skip
    return cases


def anomaly_test_file(m: ModelFacts, o: Options, rules_file: str) -> dict[str, Any]:
    return {
        "rule_files": [rules_file],
        "evaluation_interval": f"{INTERVAL}s",
        "tests": [anomaly_tests(m, o, rules_file), *meta_tests(m, o)],
    }


# -- classic rules ----------------------------------------------------------------------------

N_CLASSIC = 60  # 15 minutes: healthy for 5, faulty for 5 on SICK, healthy again
FAULT = range(20, 40)
R = 400.0  # queries per second, a mid-sized CoreDNS


def _share_inputs(sig: Signal, f_sick: float, f_ok: float, legacy: bool) -> list[dict]:
    """Numerator/complement counters giving share f on the sick instance (while faulty)."""
    spec = {
        "servfail_share": ("coredns_dns_responses_total", {"server": "dns://:53", "zone": ".", "view": "", "plugin": ""}, "rcode", "SERVFAIL", "NOERROR"),
        "refused_share": ("coredns_dns_responses_total", {"server": "dns://:53", "zone": ".", "view": "", "plugin": ""}, "rcode", "REFUSED", "NOERROR"),
        "nxdomain_share": ("coredns_dns_responses_total", {"server": "dns://:53", "zone": ".", "view": "", "plugin": ""}, "rcode", "NXDOMAIN", "NOERROR"),
        "tcp_share": ("coredns_dns_requests_total", {"server": "dns://:53", "zone": ".", "view": "", "family": "1", "type": "A"}, "proto", "tcp", "udp"),
        "upstream_error_share": ("coredns_proxy_request_duration_seconds_count", {"proxy_name": "forward", "to": "10.96.0.53:53"}, "rcode", "SERVFAIL", "NOERROR"),
    }  # fmt: skip
    out = []
    for inst, f_fault in ((SICK, f_sick), (HEALTHY, f_ok)):
        shares = [f_fault if i in FAULT else f_ok for i in range(N_CLASSIC)]
        if sig.name == "cache_miss_share":
            base = {"job": "", "instance": inst, "server": "dns://:53", "view": "", "zones": "."}
            out.append(
                _series("coredns_cache_misses_total", base, _counter([s * R for s in shares]))
            )
            out.append(_series("coredns_cache_hits_total", {**base, "type": "success"},
                               _counter([(1 - s) * R for s in shares])))  # fmt: skip
            continue
        if sig.name == "upstream_error_share" and legacy:
            base = {"job": "", "instance": inst, "to": "10.96.0.53:53"}
            out.append(
                _series(
                    "coredns_forward_responses_total",
                    {**base, "rcode": "SERVFAIL"},
                    _counter([s * R for s in shares]),
                )
            )
            out.append(
                _series(
                    "coredns_forward_responses_total",
                    {**base, "rcode": "NOERROR"},
                    _counter([(1 - s) * R for s in shares]),
                )
            )
            out.append(_series("coredns_forward_requests_total", base, _counter([R] * N_CLASSIC)))
            continue  # fmt: skip
        metric, base, key, part, rest = spec[sig.name]
        base = {"job": "", "instance": inst, **base}
        out.append(_series(metric, {**base, key: part}, _counter([s * R for s in shares])))
        out.append(_series(metric, {**base, key: rest}, _counter([(1 - s) * R for s in shares])))
    return out


def _quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_quantile as Prometheus 2.42 computes it, for cumulative (le, rate) pairs."""
    rank = q * buckets[-1][1]
    b = next(i for i, (_, c) in enumerate(buckets) if c >= rank)
    start, end, count = 0.0, buckets[b][0], buckets[b][1]
    if b > 0:
        start = buckets[b - 1][0]
        count -= buckets[b - 1][1]
        rank -= buckets[b - 1][1]
    return start + (end - start) * (rank / count)


def _latency_inputs(sig: Signal, thr: float, legacy: bool) -> tuple[list[dict], float]:
    """Histogram buckets: fast answers, and on the sick instance 10% in a slow bucket."""
    slow_i = next(
        (i for i, b in enumerate(BUCKETS[1:], 1) if BUCKETS[i - 1] >= 2 * thr), len(BUCKETS) - 1
    )
    fast_i = max((i for i, b in enumerate(BUCKETS) if b <= thr / 2), default=0)
    if sig.name == "latency_p99":
        name, base = (
            "coredns_dns_request_duration_seconds_bucket",
            {"server": "dns://:53", "zone": ".", "view": ""},
        )
    elif legacy:
        name, base = "coredns_forward_request_duration_seconds_bucket", {"to": "10.96.0.53:53"}
    else:
        name, base = (
            "coredns_proxy_request_duration_seconds_bucket",
            {"proxy_name": "forward", "rcode": "NOERROR", "to": "10.96.0.53:53"},
        )
    out, value = [], 0.0
    for inst in (SICK, HEALTHY):
        per_le: dict[str, list[float]] = {}
        for i in range(N_CLASSIC):
            slow = 0.1 if inst == SICK and i in FAULT else 0.0
            for k, le in enumerate(BUCKETS):
                share = (1 - slow) * (k >= fast_i) + slow * (k >= slow_i)
                per_le.setdefault(f"{le:g}", []).append(share * R)
            per_le.setdefault("+Inf", []).append(R)
        for le, rates in per_le.items():
            out.append(
                _series(
                    name, {"job": "", "instance": inst, **base, "le": le}, _counter(rates, 10_000)
                )
            )
    cum = [(le, (0.9 * (k >= fast_i) + 0.1 * (k >= slow_i)) * R) for k, le in enumerate(BUCKETS)]
    value = _quantile(0.99, [*cum, (math.inf, R)])
    return out, value  # fmt: skip


def classic_case(sig: Signal, entry: dict[str, Any], learned: dict[str, Any], job: str,
                 runbook_url_base: str, legacy: bool) -> dict[str, Any]:  # fmt: skip
    thr = float(entry["threshold"])
    if sig.unit == "share":
        f_sick = round(thr + (1 - thr) / 2, 3)
        f_ok = round(thr / 2, 6)
        series = _share_inputs(sig, f_sick, f_ok, legacy)
        value, shown = f_sick, _pct(f_sick)
    elif sig.unit == "seconds":
        series, value = _latency_inputs(sig, thr, legacy)
        shown = f"{value:.3g} s"
    else:  # per_second: health-check failures
        value = round(max(2 * thr, thr + 0.2), 2)
        series = []
        for inst, r in ((SICK, value), (HEALTHY, 0.0)):
            rates = [r if i in FAULT else 0.0 for i in range(N_CLASSIC)]
            labels = {"job": "", "instance": inst, "to": "10.96.0.53:53"}
            name = "coredns_forward_healthcheck_failures_total" if legacy else "coredns_proxy_healthcheck_failures_total"  # fmt: skip
            if not legacy:
                labels["proxy_name"] = "forward"
            series.append(_series(name, labels, _counter(rates, 3)))
        shown = f"{value:.3g}/s"
    for s in series:
        s["series"] = s["series"].replace('job=""', f'job="{job}"')
    ann = {k: fill(v, {"instance": SICK, "value": shown}) for k, v in annotation_texts(sig, thr, learned["window"]).items()}  # fmt: skip
    ann["runbook_url"] = f"{runbook_url_base}#{anchor(sig.alert)}"
    labels = {"job": job, "instance": SICK, "severity": "warning"}
    if (
        sig.name
        in ("upstream_latency_p99", "upstream_error_share", "upstream_healthcheck_failures")
        and not legacy
    ):
        labels["proxy_name"] = "forward"  # fmt: skip
    fault_end = FAULT.stop * INTERVAL
    return {
        "interval": f"{INTERVAL}s",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": f"{(FAULT.start - 1) * INTERVAL}s", "alertname": sig.alert, "exp_alerts": []},
            {"eval_time": f"{(FAULT.start + 8) * INTERVAL}s", "alertname": sig.alert,
             "exp_alerts": [_alert(labels, ann)]},
            {"eval_time": f"{fault_end + 120}s", "alertname": sig.alert, "exp_alerts": []},
        ],
    }  # fmt: skip


def classic_test_file(
    learned: dict[str, Any], job: str, runbook_url_base: str, legacy: bool, rules_file: str
) -> dict[str, Any]:
    tests = [
        classic_case(sig, learned["signals"][sig.name], learned, job, runbook_url_base, legacy)
        for sig in SIGNALS
        if sig.name in learned["signals"] and "skipped" not in learned["signals"][sig.name]
    ]
    return {"rule_files": [rules_file], "evaluation_interval": f"{INTERVAL}s", "tests": tests}
