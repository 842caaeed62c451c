"""Classic alerting rules from learned thresholds (thresholds.json), for setups without the exporter.

Rendering is separate from learning (learn.py) so the committed rules can be re-rendered and
checked without Prometheus or the datasets; only `rules classic --dataset` relearns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .anomaly import fill
from .model import RulesError
from .render import anchor
from .signals import BY_NAME, SIGNALS, Signal

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
    """thresholds.json as `rules classic` wrote it; RulesError if it is not usable."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RulesError(f"{path} not found: learn it with `rules classic --dataset ...`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RulesError(f"{path} is not valid JSON: {exc}") from None
    for key in ("window", "for", "signals"):
        if key not in (doc if isinstance(doc, dict) else {}):
            raise RulesError(f"{path} lacks `{key}`: relearn with `rules classic --dataset ...`")
    unknown = sorted(set(doc["signals"]) - set(BY_NAME))
    if unknown:
        raise RulesError(f"{path}: unknown signals {unknown}; relearn with this version")
    return doc


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
