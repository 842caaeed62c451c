"""A parsed /metrics page: sample name -> [(labels, value)], tolerant of bad input.

Two parsers, one result. `parse_page` is prometheus-client's text parser (the reference).
`parse_needed` is the exporter's hot path: it reads only the lines of the families the feature
list needs (about 90 of CoreDNS's 330 lines) with one regex per line. It exists because the
reference parser costs ~5 ms per real CoreDNS page, which caps a core at ~200 targets/s; the
measurement is `bench/exporter_step.py`, and a differential fuzz test holds the two parsers to
the same samples. Either raises PageError with the reason; NaN/Inf samples are dropped (a
feature then sees the series as missing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
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
    """Parse exposition text with prometheus-client; malformed input raises PageError."""
    _check_size(text)
    page = Page()
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                page.add(s.name, s.labels, float(s.value))
    except Exception as exc:  # the parser raises ValueError, IndexError, TypeError, ...
        raise PageError(f"malformed exposition text: {exc}") from exc
    return page


_VALUE = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"'  # a quoted label value, escapes unrolled for speed
_LINE = re.compile(
    r"(?P<labels>\{(?:[a-zA-Z_][a-zA-Z0-9_]*=" + _VALUE + r",?)*\})?"
    r"[ \t]+(?P<value>[^{\s]\S*)(?:[ \t]+-?[0-9]+)?[ \t]*$"
)
# The text format lets blanks separate any two tokens (Go's parser and prometheus-client read
# `name {a="b", c="d"}1`); Go clients never write them, so this slower form is the fallback.
_LINE_BLANKS = re.compile(
    r"[ \t]*(?:(?P<labels>\{[ \t]*(?:[a-zA-Z_][a-zA-Z0-9_]*[ \t]*=[ \t]*"
    + _VALUE
    + r"[ \t]*,?[ \t]*)*\})[ \t]*|[ \t]+)"
    r"(?P<value>\S+)(?:[ \t]+-?[0-9]+)?[ \t]*$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\[\\\"n]")


# Label sets repeat from scrape to scrape (and across a fleet): parse each text once.
# The dicts are shared, so Page users must treat labels as read-only.
_LABEL_CACHE: dict[str, Labels] = {}
_LABEL_CACHE_MAX = 100_000


def _labels(text: str, where: str) -> Labels:
    labels = _LABEL_CACHE.get(text)
    if labels is not None:
        return labels
    labels = {}
    for k, v in _LABEL.findall(text):
        if k in labels:
            raise PageError(f"duplicate label {k!r} {where}")
        labels[k] = _ESCAPE.sub(lambda e: _ESCAPES[e.group(0)], v) if "\\" in v else v
    if len(_LABEL_CACHE) >= _LABEL_CACHE_MAX:
        _LABEL_CACHE.clear()
    _LABEL_CACHE[text] = labels
    return labels


def parse_needed(text: str, names: Iterable[str] | frozenset[str]) -> Page:
    """Parse only the sample lines whose name is in `names`; the rest is skipped unread.

    A needed line that does not parse makes the page an error (what prometheus-client would
    do); garbage in families the features never read is ignored. A page with none of the needed
    names is an error too: it is not a CoreDNS page (an HTML login page, a wrong port).
    """
    _check_size(text)
    want = names if isinstance(names, frozenset) else frozenset(names)
    page = Page()
    seen = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line or line[0] == "#":
            continue
        # The name ends at the first "{", blank or tab: three C-level finds beat a regex here.
        end = len(line)
        for sep in "{ \t":
            k = line.find(sep, 0, end)
            if k >= 0:
                end = k
        name = line[:end]
        if name not in want:
            continue
        seen += 1
        m = _LINE.match(line, end) or _LINE_BLANKS.match(line, end)
        if m is None:
            raise PageError(f"malformed exposition text: line {lineno}: {line[:120]!r}")
        lab = m.group("labels")
        labels = _labels(lab, f"in {name}{lab[:80]}") if lab else {}
        try:
            value = float(m.group("value"))
        except ValueError:
            raise PageError(
                f"malformed exposition text: line {lineno}: bad value {m.group('value')!r}"
            ) from None
        page.add(name, labels, value)
    if not seen:
        raise PageError(
            "no CoreDNS metrics on this page: is the URL a CoreDNS /metrics endpoint "
            "with the prometheus plugin enabled?"
        )
    return page


def _check_size(text: str) -> None:
    if len(text) > MAX_PAGE_BYTES:
        raise PageError(f"page is {len(text)} bytes, over the {MAX_PAGE_BYTES} byte limit")
