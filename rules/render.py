"""YAML that reads like hand-written rules, the PrometheusRule wrapper, and all-or-nothing writes."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as `|` literals (PromQL stays readable), no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: Any, header: str = "") -> str:
    """YAML text with an optional `# ` comment header."""
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=10_000, allow_unicode=True)
    lines = [f"# {line}".rstrip() for line in header.strip().splitlines()] if header else []
    return "\n".join(lines) + ("\n" if lines else "") + body


def duration(seconds: float) -> str:
    """Seconds -> a Prometheus duration ("2s", "1m30s", "0s"), rounded up to whole seconds."""
    s = max(0, int(-(-round(seconds, 3) // 1)))
    if s == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out += f"{s // size}{unit}"
            s %= size
    return out


def seconds(text: str) -> float:
    """Inverse of duration() for the h/m/s durations written here."""
    parts = re.findall(r"(\d+)([hms])", text)
    if "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration written by this module: {text!r}")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def prometheus_rule(groups: list[dict[str, Any]], name: str, namespace: str | None) -> dict:
    """The same groups as a PrometheusRule (monitoring.coreos.com/v1) for the Operator."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {"app.kubernetes.io/name": "coredns-anomaly", "role": "alert-rules"}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta,
        "spec": {"groups": groups},
    }


def anchor(alert: str) -> str:
    """The runbook heading anchor GitHub makes for `## <alert>`."""
    return re.sub(r"[^a-z0-9-]", "", alert.lower())


def write_all(files: dict[Path, str]) -> None:
    """Write every file or none: temp files beside their targets first, then os.replace each.

    Everything is rendered before this is called, so errors (bad input, failed learning) leave
    the outputs untouched; a failure while writing temp files removes them again.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(text)
            temps.append((tmp, path))
    except BaseException:
        for tmp, _ in temps:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    for tmp, path in temps:
        os.replace(tmp, path)
