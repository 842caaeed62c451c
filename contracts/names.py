"""Names several roles must spell alike, each written out in full once.

The exporter publishes the series (exporter/collector.py), the rules generator and the webhook
query them; the rules name the alerts, the webhook recognises them by their prefix; the lab
injects the fault classes, training learns them, the webhook offers them to engineers; the
webhook records the verdicts, training reads them. A full name here is what `grep` finds.
"""

from __future__ import annotations

# --- The exporter's series (docs/exporter.md), by the name Prometheus stores. -----------------
# Counters are named with their `_total` suffix: that is the stored name, and prometheus_client's
# CounterMetricFamily takes it as is.

# Per target, only while the target has a verdict:
ANOMALY = "coredns_anomaly"  # 1 while the latest window is anomalous (debounced), else 0
SCORE = "coredns_anomaly_score"  # raw score / threshold: >= 1 is anomalous
TYPE = "coredns_anomaly_type"  # {type}: likely anomaly class, 1 while anomalous
FEATURE_CONTRIBUTION = "coredns_anomaly_feature_contribution"  # {feature}: top features
HELD_BACK = "coredns_anomaly_held_back"  # over 1 but a judged false alarm again
# Per target:
WINDOW_FILL_RATIO = "coredns_anomaly_window_fill_ratio"
LEARNING = "coredns_anomaly_learning"  # 1 while the instance's baseline is still learning
RESTART_GRACE = (
    "coredns_anomaly_restart_grace"  # 1 while a restarted CoreDNS's cold start is not judged
)
FEATURE_MISSING = "coredns_anomaly_feature_missing"  # {feature}
TARGET_UP = "coredns_anomaly_target_up"
TARGET_SCRAPE_DURATION_SECONDS = "coredns_anomaly_target_scrape_duration_seconds"
TARGET_ERRORS_TOTAL = "coredns_anomaly_target_errors_total"  # {reason}
# The exporter itself:
TARGETS = "coredns_anomaly_targets"
STEP_DURATION_SECONDS = "coredns_anomaly_step_duration_seconds"
INFERENCE_DURATION_SECONDS = "coredns_anomaly_inference_duration_seconds"
STEPS_TOTAL = "coredns_anomaly_steps_total"
STEP_OVERRUNS_TOTAL = "coredns_anomaly_step_overruns_total"
MODEL_RELOADS_TOTAL = "coredns_anomaly_model_reloads_total"  # {result}
MODEL_LAST_RELOAD_SUCCESSFUL = "coredns_anomaly_model_last_reload_successful"
MODEL_INFO = "coredns_anomaly_model_info"  # {kind, version, sha256, window, step_seconds, runtime}
MODEL_STEP_SECONDS = "coredns_anomaly_model_step_seconds"

# --- Alerts. ---------------------------------------------------------------------------------
# Every alert this project's rules define starts with this (rules/anomaly.py, rules/classic.py);
# the webhook never learns weak labels from them: a model would only learn from itself.
ALERT_PREFIX = "CoreDNSAnomaly"
ANOMALY_ALERT = "CoreDNSAnomaly"  # the model's own alert (the others are longer names)
OWN_ALERTNAMES = rf"^{ALERT_PREFIX}"  # as a regular expression over alertname

# --- Anomaly classes. ------------------------------------------------------------------------
# The faults the lab injects and the model is trained to tell apart; a verdict's class may be
# any other name too, but only these can train the model.
FAULT_CLASSES = (
    "upstream_latency",
    "upstream_servfail",
    "upstream_loss",
    "query_flood",
    "random_subdomain",
    "cache_thrash",
    "cpu_starvation",
    "tcp_fallback",
    "misconfig_refused",
)
# The exporter's type of a window far from every class it was trained on: not a class.
UNKNOWN_TYPE = "unknown"

# --- Verdicts engineers record on the webhook's pages (and in label files). ------------------
VERDICT_ANOMALY = "anomaly"
VERDICT_FALSE_ALARM = "false_alarm"
VERDICTS = (VERDICT_ANOMALY, VERDICT_FALSE_ALARM)
# A false-alarm verdict's range, as a label in a dataset, has this class (and label source).
FALSE_ALARM = VERDICT_FALSE_ALARM
# An anomaly verdict that names no class, as a label in a dataset, has this class.
UNCLASSIFIED_ANOMALY = VERDICT_ANOMALY
