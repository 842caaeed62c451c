"""The one Prometheus HTTP API client, and metrics from it (Prometheus, Thanos, Mimir) instead
of scraping.

`PrometheusAPI` is the project's only client of the API: the exporter's source below, `collect`
and `fit --prometheus` (training/collect.py), the rule baselines evaluated by the real Prometheus
(training/baselines/promql.py) and the loop on loopback (loop/stack.py) all go through it, so
auth, TLS, chunking under the points limit and the error messages are written once.

For fleets larger than one exporter can scrape: each step is one instant query for every
family the features read, grouped by instance into pages; at start one range query fills the
windows, so scores come at once instead of after W steps. Prometheus must scrape CoreDNS at
(or below) the model's step, or one-step rates are mostly zero; the exporter warns when
samples stop changing between steps.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
from typing import Any

import requests

from .engine import Observation
from .features import NEEDED_NAMES
from .page import Page
from .scrape import HttpOptions

log = logging.getLogger(__name__)

MAX_POINTS = 10_000  # per series per query_range; Prometheus refuses more than 11,000


class PrometheusAPIError(RuntimeError):
    """The API gave no data: unreachable, credentials refused, not the API, or an error answer;
    the message says which, with the URL."""


class PrometheusSourceError(PrometheusAPIError):
    """The exporter's Prometheus source failed (the step marks its instances down)."""


def _num(x: float) -> str:
    """A float as the API reads it: 2.0 -> "2", 0.25 -> "0.25" (no digits lost)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


class PrometheusAPI:
    """A client of the Prometheus HTTP API (v1) with the exporter's auth and TLS options.

    Requests go as POST forms (long selectors and expressions fit), or as GET with `post=False`
    for gateways that only pass GET. Every failure raises `error` (a PrometheusAPIError
    subclass of the caller's) with one message per cause.
    """

    def __init__(
        self,
        base_url: str,
        http: HttpOptions | None = None,
        timeout: float = 60.0,
        *,
        post: bool = True,
        error: type[PrometheusAPIError] = PrometheusAPIError,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.http = http or HttpOptions()
        self.timeout, self.post, self.error = timeout, post, error
        self.session = requests.Session()
        self.http.apply(self.session)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> PrometheusAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, Any], *, post: bool | None = None) -> Any:
        """The `data` of one API answer; `post` overrides the client's method (some endpoints,
        such as /api/v1/alerts, answer GET only)."""
        url = f"{self.base}{path}"
        try:
            if self.post if post is None else post:
                r = self.session.post(
                    url, data=params, timeout=self.timeout, verify=self.http.verify
                )
            else:
                r = self.session.get(
                    url, params=params, timeout=self.timeout, verify=self.http.verify
                )
        except requests.RequestException as exc:
            raise self.error(f"cannot reach the Prometheus API at {url}: {exc}") from exc
        if r.status_code in (401, 403):
            raise self.error(
                f"Prometheus API at {url}: HTTP {r.status_code}; "
                "check the bearer token or basic auth"
            )
        try:
            body = r.json()
        except ValueError:
            raise self.error(
                f"Prometheus API at {url}: HTTP {r.status_code}, not JSON (wrong URL?): "
                f"{r.text[:200]!r}"
            ) from None
        if r.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
            err = body.get("error", body) if isinstance(body, dict) else body
            kind = body.get("errorType", "error") if isinstance(body, dict) else "error"
            raise self.error(f"Prometheus API at {url}: HTTP {r.status_code}: {kind}: {err}")
        return body["data"]

    def query(self, expr: str, at: float) -> list[dict]:
        """An instant query's result at unix time `at`."""
        return self.get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        """A range query's result over [start, end] every `step` s, asked in chunks of at most
        MAX_POINTS steps; a series cut by a chunk comes once per chunk."""
        n = math.floor((end - start) / step + 1e-6) + 1  # unix times carry ~1e-7 s of rounding
        out: list[dict] = []
        for c in range(0, max(n, 0), MAX_POINTS):
            last = min(n, c + MAX_POINTS) - 1
            params = {
                "query": expr,
                "start": f"{start + c * step:.3f}",
                "end": f"{start + last * step:.3f}",
                "step": _num(step),
            }
            out += self.get("/api/v1/query_range", params)["result"]
        return out

    def series(self, match: str, start: float, end: float) -> list[dict[str, str]]:
        """The label sets of the series matching `match` over [start, end]."""
        return self.get(
            "/api/v1/series", {"match[]": match, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        )

    def alerts(self) -> list[dict]:
        """The alerts Prometheus holds now (pending and firing)."""
        return self.get("/api/v1/alerts", {}, post=False)["alerts"]


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
