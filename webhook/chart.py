"""One instance's chart: score and top features over time, alerts, verdicts and marked ranges.

An engineer judges by looking: the page draws the exporter's `coredns_anomaly_score` and the
features that drove it (`coredns_anomaly_feature_contribution`, exported while anomalous),
read from the Prometheus API when `prometheus_url` is set, with every alert of the instance
and every range already marked. The SVG is drawn here, on the server: no chart library, no
inline script (the page's CSP allows only its own static files); webhook/static/chart.js only
turns a drag across the chart into the marking form's start and end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from coredns_anomaly.contracts import names as N

WIDTH, HEIGHT, FEATURE_HEIGHT = 900, 220, 120
POINTS = 400  # samples per series: enough for a 900 px wide chart, small for Prometheus
TOP_FEATURES = 3
SPANS_HOURS = (1, 6, 24, 72, 168)
PROMETHEUS_TIMEOUT_S = 5.0


@dataclass
class Series:
    name: str
    times: list[float]
    values: list[float]


@dataclass
class ChartData:
    score: Series | None = None
    features: list[Series] = field(default_factory=list)
    problem: str = ""  # why there is no score line (no URL, Prometheus unreachable, no data)


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal of `value` (the instance name comes from a URL)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def fetch(prometheus_url: str, instance: str, start: float, end: float) -> ChartData:
    """The score and the top contributing features of `instance` over [start, end]."""
    if not prometheus_url:
        return ChartData(problem="set prometheus_url (--prometheus-url) to see the score here")
    from coredns_anomaly.exporter.promclient import PrometheusAPI, PrometheusAPIError

    step = max(1.0, math.ceil((end - start) / POINTS))
    sel = f"{{instance={promql_string(instance)}}}"
    try:  # the project's one Prometheus client (GET: a read-only page's queries)
        with PrometheusAPI(prometheus_url, timeout=PROMETHEUS_TIMEOUT_S, post=False) as api:
            score = api.query_range(N.SCORE + sel, start, end, step)
            contrib = api.query_range(N.FEATURE_CONTRIBUTION + sel, start, end, step)
    except (PrometheusAPIError, KeyError, TypeError) as exc:
        return ChartData(problem=f"Prometheus at {prometheus_url} did not answer: {exc}"[:300])
    data = ChartData()
    if score:
        data.score = _series(score[0], N.SCORE)
    else:
        data.problem = f"no {N.SCORE} for {instance} in this range"
    feats = [_series(s, s.get("metric", {}).get("feature", "?")) for s in contrib]
    feats.sort(key=lambda s: -max(s.values, default=0.0))
    data.features = feats[:TOP_FEATURES]
    return data


def _series(result: dict[str, Any], name: str) -> Series:
    pts = [(float(t), float(v)) for t, v in result.get("values", [])]
    pts = [(t, v) for t, v in pts if math.isfinite(v)]
    return Series(name, [t for t, _ in pts], [v for _, v in pts])


@dataclass
class Band:
    """A time range drawn over the chart (an alert, a marked range)."""

    x: float
    width: float
    kind: str  # CSS class: alert-none | alert-anomaly | alert-false_alarm | mark-anomaly | ...
    title: str


def layout(
    data: ChartData,
    start: float,
    end: float,
    alerts: list[tuple[float, float, str, str]],
    marks: list[tuple[float, float, str, str]],
) -> dict[str, Any]:
    """Coordinates for the template: polylines, threshold, bands and time ticks."""
    span = max(end - start, 1.0)

    def x(t: float) -> float:
        return round((min(max(t, start), end) - start) / span * WIDTH, 1)

    top = max([2.0, *(1.1 * v for v in (data.score.values if data.score else []))])

    def y(v: float) -> float:
        return round(HEIGHT - min(max(v, 0.0), top) / top * HEIGHT, 1)

    score_pts = (
        " ".join(f"{x(t)},{y(v)}" for t, v in zip(data.score.times, data.score.values, strict=True))
        if data.score
        else ""
    )
    fmax = max([1e-9, *(max(s.values, default=0.0) for s in data.features)])
    features = [
        {
            "name": s.name,
            "points": " ".join(
                f"{x(t)},{round(FEATURE_HEIGHT - v / fmax * FEATURE_HEIGHT, 1)}"
                for t, v in zip(s.times, s.values, strict=True)
            ),
        }
        for s in data.features
    ]

    def bands(items, prefix: str) -> list[Band]:
        out = []
        for a, b, kind, title in items:
            if b < start or a > end:
                continue
            out.append(Band(x(a), max(x(b) - x(a), 2.0), f"{prefix}-{kind}", title))
        return out

    ticks = []
    for k in range(7):
        t = start + span * k / 6
        fmt = "%H:%M" if span <= 86400 else "%m-%d %H:%M"
        label = datetime.fromtimestamp(t, tz=timezone.utc).strftime(fmt)
        ticks.append({"x": round(WIDTH * k / 6, 1), "label": label})
    return {
        "width": WIDTH, "height": HEIGHT, "feature_height": FEATURE_HEIGHT,
        "score_points": score_pts, "threshold_y": y(1.0), "top": round(top, 2),
        "features": features, "alerts": bands(alerts, "alert"), "marks": bands(marks, "mark"),
        "ticks": ticks, "start": start, "end": end,
    }  # fmt: skip


def window(hours_text: str | None, end_text: str | None, now: datetime) -> tuple[float, float, int]:
    """(start, end, hours) of the chart: `hours` one of SPANS_HOURS (default 6), ending at
    `end` (RFC 3339, default now, never in the future)."""
    from coredns_anomaly.webhook.timefmt import parse_rfc3339

    try:
        hours = int(hours_text or 6)
    except ValueError:
        hours = 6
    hours = hours if hours in SPANS_HOURS else 6
    end = now
    if end_text:
        try:
            end = min(parse_rfc3339(end_text), now)
        except ValueError:
            end = now
    return (end - timedelta(hours=hours)).timestamp(), end.timestamp(), hours
