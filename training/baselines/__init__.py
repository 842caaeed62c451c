"""Baselines our models are compared against: classic Prometheus alerting rules, evaluated by
the real Prometheus over a recorded dataset (promql.py)."""

from .promql import apply_for, evaluate_alert_rules, parse_duration, rule_alerts

__all__ = ["apply_for", "evaluate_alert_rules", "parse_duration", "rule_alerts"]
