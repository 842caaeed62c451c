"""Metrics from a Prometheus-compatible API (Prometheus, Thanos, Mimir) instead of scraping.

The client itself is exporter/promclient.py (`PrometheusAPI`, the project's only one).

For fleets larger than one exporter can scrape: each step is one instant query for every
family the features read, grouped by instance into pages; at start one range query fills the
windows, so scores come at once instead of after W steps. Prometheus must scrape CoreDNS at
(or below) the model's step, or one-step rates are mostly zero; the exporter warns when
samples stop changing between steps.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict

from .engine import Observation
from .features import NEEDED_NAMES
from .page import Page
from .promclient import PrometheusAPI, PrometheusAPIError
from .scrape import HttpOptions

log = logging.getLogger(__name__)


class PrometheusSourceError(PrometheusAPIError):
    """The exporter's Prometheus source failed (the step marks its instances down)."""


def selector_query(selector: str) -> str:
    """`{job="coredns"}` -> one vector selector for every family the features need."""
    inner = selector.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1].strip()
    elif inner:
        raise PrometheusSourceError(
            f'--prometheus-selector must look like {{job="coredns"}}, got {selector!r}'
        )
    names = "|".join(sorted(re.escape(n) for n in NEEDED_NAMES))
    matchers = [f'__name__=~"{names}"'] + ([inner] if inner else [])
    return "{" + ", ".join(matchers) + "}"


class PrometheusSource:
    def __init__(
        self, url: str, selector: str, timeout: float, http: HttpOptions | None = None,
        instance_label: str = "instance",
    ) -> None:  # fmt: skip
        self.api = PrometheusAPI(url, http, timeout, error=PrometheusSourceError)
        self.base = self.api.base
        self.query = selector_query(selector)
        self.instance_label = instance_label

    def _pages(self, result: list[dict], pick) -> dict[str, Page]:
        pages: dict[str, Page] = defaultdict(Page)
        for series in result:
            labels = dict(series["metric"])
            name = labels.pop("__name__", "")
            inst = labels.get(self.instance_label)
            if not inst:
                continue
            for value in pick(series):
                pages[inst].add(name, labels, float(value))
        return pages

    def scrape_interval(self, lookback: float = 600.0) -> float | None:
        """Median seconds between the raw samples Prometheus holds for these CoreDNS (None: no data)."""
        inner = self.query[1:-1].split(", ", 1)
        sel = ", ".join(
            ['__name__=~"coredns_dns_requests_total|coredns_dns_request_count_total"', *inner[1:]]
        )
        result = self.api.query(f"{{{sel}}}[{int(lookback)}s]", time.time())
        diffs = [
            float(b[0]) - float(a[0])
            for series in result
            for a, b in zip(
                series.get("values", [])[:-1], series.get("values", [])[1:], strict=True
            )
        ]
        return float(sorted(diffs)[len(diffs) // 2]) if diffs else None

    def fetch(self) -> list[Observation]:
        t0, w0 = time.time(), time.perf_counter()
        result = self.api.query(self.query, t0)
        pages = self._pages(result, lambda s: [s["value"][1]])
        dur = time.perf_counter() - w0
        return [Observation(inst, t0, dur, page=p) for inst, p in sorted(pages.items())]

    def history(self, steps: int, step: float) -> list[list[Observation]]:
        """The last `steps` steps, oldest first, to warm the windows at start."""
        end = time.time()
        start = end - (steps - 1) * step
        result = self.api.query_range(self.query, start, end, step)
        by_step: list[dict] = [{} for _ in range(steps)]  # one pass over the values
        for series in result:
            for t, v in series.get("values", []):
                k = round((float(t) - start) / step)
                if 0 <= k < steps:
                    by_step[k].setdefault(id(series), (series, []))[1].append(v)
        out = []
        for k in range(steps):
            ts = start + k * step
            rows = by_step[k]
            pages = self._pages([s for s, _ in rows.values()], lambda s, rows=rows: rows[id(s)][1])
            out.append([Observation(inst, ts, 0.0, page=p) for inst, p in sorted(pages.items())])
        return out
