"""The one Prometheus HTTP API client: requests and the exporter's auth/TLS options, nothing of
the exporter's engine, so every role can use it (the webhook's chart too).

`PrometheusAPI` is the project's only client of the API: the exporter's Prometheus source
(exporter/promapi.py), `collect` and `fit --prometheus` (training/collect.py), the rule
baselines evaluated by the real Prometheus (training/baselines/promql.py), the webhook's chart
(webhook/chart.py) and the loop on loopback (loop/stack.py) all go through it, so auth, TLS,
chunking under the points limit and the error messages are written once.
"""

from __future__ import annotations

import math
from typing import Any

import requests

from .scrape import HttpOptions

MAX_POINTS = 10_000  # per series per query_range; Prometheus refuses more than 11,000


class PrometheusAPIError(RuntimeError):
    """The API gave no data: unreachable, credentials refused, not the API, or an error answer;
    the message says which, with the URL."""


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
