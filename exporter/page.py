"""A parsed /metrics page: sample name -> [(labels, value)], tolerant of bad input.

Parsing is prometheus-client's text parser. A page that does not parse raises PageError with
the parser's reason; NaN/Inf samples are dropped (a feature then sees the series as missing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]
MAX_PAGE_BYTES = 20 * 1024 * 1024


class PageError(ValueError):
    """A metrics page that cannot be used; the message says why."""


@dataclass
class Page:
    """Samples of one scrape, grouped by sample name (e.g. `..._bucket`, `..._count`)."""

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    dropped_nonfinite: int = 0

    def add(self, name: str, labels: Labels, value: float) -> None:
        if not math.isfinite(value):
            self.dropped_nonfinite += 1
            return
        self.samples.setdefault(name, []).append((labels, value))

    def has(self, name: str) -> bool:
        return name in self.samples

    def get(self, name: str) -> list[tuple[Labels, float]]:
        return self.samples.get(name, [])

    def plugin_enabled(self, plugin: str) -> bool | None:
        """From coredns_plugin_enabled; None when the page does not say (pre-1.9 CoreDNS)."""
        rows = self.samples.get("coredns_plugin_enabled")
        if not rows:
            return None
        return any(lb.get("name") == plugin and v > 0 for lb, v in rows)


def parse_page(text: str) -> Page:
    """Parse exposition text; malformed input raises PageError, never anything else."""
    if len(text) > MAX_PAGE_BYTES:
        raise PageError(f"page is {len(text)} bytes, over the {MAX_PAGE_BYTES} byte limit")
    page = Page()
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                page.add(s.name, s.labels, float(s.value))
    except Exception as exc:  # the parser raises ValueError, IndexError, TypeError, ...
        raise PageError(f"malformed exposition text: {exc}") from exc
    return page
