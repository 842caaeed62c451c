"""Classic alerting rules from learned thresholds (thresholds.json), for setups without the exporter.

Only rendering is here: training learns the thresholds (`coredns-anomaly thresholds learn`,
training/baselines/thresholds.py) and writes thresholds.json, so the committed rules are
re-rendered and checked without Prometheus, the datasets or the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coredns_anomaly.contracts import thresholds
from coredns_anomaly.contracts.signals import SIGNALS, Signal

from .anomaly import fill
from .model import RulesError
from .render import anchor

GROUP = "coredns-anomaly-classic"
VALUE_FORMAT = {
    "share": "{{ $value | humanizePercentage }}",
    "seconds": '{{ $value | printf "%.3g" }} s',
    "per_second": '{{ $value | printf "%.3g" }}/s',
}


def format_threshold(sig: Signal, value: float) -> str:
    """The threshold as the description prints it (same style as the value)."""
    if sig.unit == "share":
        return f"{value * 100:.4g}%"
    return f"{value:.3g} s" if sig.unit == "seconds" else f"{value:.3g}/s"


def load_thresholds(path: str | Path) -> dict[str, Any]:
    """thresholds.json as training wrote it (contracts/thresholds.py); RulesError if unusable."""
    try:
        return thresholds.read(path)
    except thresholds.ThresholdsError as exc:
        raise RulesError(str(exc)) from None


def classic_rules(
    learned: dict[str, Any], job: str, runbook_url_base: str, legacy: bool
) -> list[dict[str, Any]]:
    rules = []
    for sig in SIGNALS:  # file order is the code's, whatever order the JSON has
        entry = learned["signals"].get(sig.name)
        if entry is None or "skipped" in entry:
            continue
        thr = float(entry["threshold"])
        expr = sig.expr(job, learned["window"], legacy)
        rule: dict[str, Any] = {
            "alert": sig.alert,
            "expr": f"(\n{_indent(expr)}\n) > {thr:g}",
        }
        if learned["for"] != "0s":
            rule["for"] = learned["for"]
        rule["labels"] = {"severity": "warning"}
        texts = annotation_texts(sig, thr, learned["window"])
        values = {"instance": "{{ $labels.instance }}", "value": VALUE_FORMAT[sig.unit]}
        rule["annotations"] = {k: fill(v, values) for k, v in texts.items()}
        rule["annotations"]["runbook_url"] = f"{runbook_url_base}#{anchor(sig.alert)}"
        rules.append(rule)
    if not rules:
        raise RulesError("every signal was skipped: the datasets' normal traffic separates nothing")
    return rules


def annotation_texts(sig: Signal, thr: float, window: str) -> dict[str, str]:
    """Annotations with @instance@ / @value@ markers (template code in rules, values in tests)."""
    return {
        "summary": f"CoreDNS @instance@: {sig.title} above its learned normal.",
        "description": f"The {sig.title} of CoreDNS @instance@ is @value@ over {window}, above "
        f"{format_threshold(sig, thr)}, the edge of normal learned from recorded traffic. "
        f"Typical causes: {', '.join(sig.catches)}.",
        "anomaly_type": sig.catches[0],
        "top_features": sig.feature,
    }


def groups(learned: dict[str, Any], job: str, runbook_url_base: str, legacy: bool) -> list[dict]:
    return [{"name": GROUP, "rules": classic_rules(learned, job, runbook_url_base, legacy)}]


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
