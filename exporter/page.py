"""A parsed /metrics page: sample name -> [(labels, value)], tolerant of bad input.

Two parsers, one result. `parse_page` is prometheus-client's text parser (the reference).
`parse_needed` is the exporter's hot path: it reads only the lines of the families the feature
list needs (about 90 of CoreDNS's 330 lines) and skips the rest unread. It exists because the
reference parser costs ~4 ms per real CoreDNS page (~1.6 ms even on the pre-filtered lines),
which caps a core at a few hundred targets per second; the measurement is
`bench/exporter_step.py`.

`parse_needed` reads a needed line in one of two ways, and both are linear in the line:
- the forms real exporters write (Go's and Python's clients, OpenMetrics with exemplars and
  timestamps; CRLF and leading blanks are stripped first, as prometheus-client does) match one
  regular expression whose every quantifier has a single way to consume each character, so
  it cannot backtrack exponentially;
- any other form (blanks between tokens, tabs, quoted names, `{"name", ...}`) is handed, line
  by line, to prometheus-client's own parser, so it reads exactly what the library reads. That
  path costs ~0.1-1 ms per KB and the library's label parser grows quadratically on long lines,
  so a page may send at most SLOW_PATH_MAX_BYTES through it, in lines of at most
  SLOW_LINE_MAX_BYTES; a page over that budget is refused (no real exporter writes such lines,
  and a hostile target must not stall the step).
A differential fuzz test (tests/exporter/test_exporter_fuzz.py) holds both parsers to the same
samples, and bounds the time per KB of any input.

Either parser raises PageError with the reason and the line number. NaN/+-Inf samples are kept
aside (Page.nonfinite): an aggregate that would sum one is masked for that step (features.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.parser import text_fd_to_metric_families

Labels = dict[str, str]
MAX_PAGE_BYTES = 20 * 1024 * 1024
# Needed lines in forms other than the fast one go through prometheus-client's own parser, at
# ~0.1-1 ms per KB (measured); its label parser copies the rest of the line per label and per
# escaped quote, so a line of tens of KB costs quadratically more. Real pages send none of
# these lines. Per page at most SLOW_PATH_MAX_BYTES of them (~30 ms of one core at worst), each
# at most SLOW_LINE_MAX_BYTES (short enough for the quadratic part to stay negligible).
SLOW_PATH_MAX_BYTES = 32 * 1024
SLOW_LINE_MAX_BYTES = 8 * 1024


class PageError(ValueError):
    """A metrics page that cannot be used; the message says why (and on which line)."""


@dataclass
class Page:
    """Samples of one scrape, grouped by sample name (e.g. `..._bucket`, `..._count`).

    NaN and +-Inf samples are not in `samples` (nothing downstream can sum them), but they are
    remembered in `nonfinite` with their labels: a sum that would include one is unknown, not
    smaller, and must be masked rather than read as a counter reset.
    """

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    dropped_nonfinite: int = 0
    nonfinite: dict[str, list[Labels]] = field(default_factory=dict)

    def add(self, name: str, labels: Labels, value: float) -> None:
        if not math.isfinite(value):
            self.dropped_nonfinite += 1
            self.nonfinite.setdefault(name, []).append(labels)
            return
        self.samples.setdefault(name, []).append((labels, value))

    def has(self, name: str) -> bool:
        """The page has finite samples of `name`."""
        return name in self.samples

    def present(self, name: str) -> bool:
        """The page has samples of `name`, finite or not (the family exists on this page)."""
        return name in self.samples or name in self.nonfinite

    def get(self, name: str) -> list[tuple[Labels, float]]:
        return self.samples.get(name, [])

    def plugin_enabled(self, plugin: str) -> bool | None:
        """From coredns_plugin_enabled; None when the page does not say (pre-1.9 CoreDNS)."""
        rows = self.samples.get("coredns_plugin_enabled")
        if not rows:
            return None
        return any(lb.get("name") == plugin and v > 0 for lb, v in rows)


def _as_float(v: int | float) -> float:
    """prometheus-client returns ints for integer text; one past float range is +-Inf."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _one_line(exc: BaseException, limit: int = 160) -> str:
    """An exception as one short line: the library quotes whole label strings in messages."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(lineno: int, line: str) -> str:
    return f"line {lineno} ({line[:100]!r})"


class _CountingLines:
    """Feeds lines to prometheus-client's parser and remembers how many it took (the line of
    an error: the library does not say)."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.n = 0

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            self.n += 1
            yield line


def parse_page(text: str) -> Page:
    """Parse exposition text with prometheus-client; malformed input raises PageError."""
    _check_size(text)
    page = Page()
    lines = _CountingLines(text)
    try:
        for fam in text_fd_to_metric_families(lines):  # type: ignore[arg-type]
            for s in fam.samples:
                page.add(s.name, s.labels, _as_float(s.value))
    except Exception as exc:  # the parser raises ValueError, IndexError, TypeError, ...
        line = lines.lines[lines.n - 1] if 0 < lines.n <= len(lines.lines) else ""
        raise PageError(
            f"malformed exposition text on {_where(lines.n, line)}: {_one_line(exc)}"
        ) from exc
    return page


# The fast form, matched from the end of the metric name. Each quantifier consumes its own
# characters only (label pairs are separated by commas, tokens by exactly one space, a token
# holds no blank, quote or brace), so a failing line costs a constant number of passes: the
# 2^n blank-splitting backtracking of the old blank-tolerant regex cannot happen here.
_LNAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
_QVALUE = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # a quoted label value, escapes unrolled for speed
_PAIRS = rf"(?:{_LNAME}={_QVALUE},)*(?:{_LNAME}={_QVALUE})?"  # a trailing comma is allowed
_TOKEN = r'[^\s"{}#]+'
_LINE = re.compile(  # groups: labels, value, timestamp, exemplar value, exemplar timestamp
    rf"(?:\{{(?P<labels>{_PAIRS})\}} ?| )(?P<value>{_TOKEN})(?: (?P<ts>{_TOKEN}))?"
    rf"(?: # \{{{_PAIRS}\}} (?P<exv>{_TOKEN})(?: (?P<exts>{_TOKEN}))?)?\Z",
    re.DOTALL,
)
_LABEL = re.compile(rf'({_LNAME})="([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\[\\\"n]")


# Label sets repeat from scrape to scrape (and across a fleet): parse each text once.
# The dicts are shared, so Page users must treat labels as read-only.
_LABEL_CACHE: dict[str, Labels] = {}
_LABEL_CACHE_MAX = 100_000


def _labels(text: str) -> Labels | None:
    """The labels of a fast-form label text; None when prometheus-client must decide (a
    duplicate name, or a reserved `__` name, which it refuses or reads as the metric name)."""
    labels = _LABEL_CACHE.get(text)
    if labels is not None:
        return labels
    labels = {}
    for k, v in _LABEL.findall(text):
        if k in labels or k[:2] == "__":
            return None
        labels[k] = _ESCAPE.sub(lambda e: _ESCAPES[e.group(0)], v) if "\\" in v else v
    if len(_LABEL_CACHE) >= _LABEL_CACHE_MAX:
        _LABEL_CACHE.clear()
    _LABEL_CACHE[text] = labels
    return labels


def _timestamp_ok(tok: str) -> bool:
    """prometheus-client parses the last token of a sample as a timestamp (int or float, no
    `_`, divided by 1000); it fails on a token it cannot read or an integer too large."""
    if "_" in tok:
        return False
    try:
        int(tok) / 1000
    except ValueError:
        try:
            float(tok)
        except ValueError:
            return False
    except OverflowError:
        return False
    return True


def _library_line(line: str, lineno: int) -> list[tuple[str, Labels, float]]:
    """One line through prometheus-client's text parser: (name, labels, value) of its samples."""
    try:
        return [
            (s.name, s.labels, _as_float(s.value))
            for fam in text_fd_to_metric_families([line])  # type: ignore[arg-type]
            for s in fam.samples
        ]
    except Exception as exc:  # the parser raises ValueError, IndexError, TypeError, ...
        raise PageError(
            f"malformed exposition text on {_where(lineno, line)}: {_one_line(exc)}"
        ) from exc


def parse_needed(
    text: str,
    names: Iterable[str] | frozenset[str],
    slow_path_max_bytes: int = SLOW_PATH_MAX_BYTES,
) -> Page:
    """Parse only the sample lines whose name is in `names`; the rest is skipped unread.

    A line's name is what precedes its first `{`, space or tab, once the line is stripped of
    blanks (CRLF, indentation) as prometheus-client strips it. A needed line that does not
    parse makes the page an error (what prometheus-client would do); garbage in families the
    features never read is ignored. A page with none of the needed names is an error too: it
    is not a CoreDNS page (an HTML login page, a wrong port).
    """
    _check_size(text)
    want = names if isinstance(names, frozenset) else frozenset(names)
    page = Page()
    add = page.add
    match = _LINE.match
    cache = _LABEL_CACHE
    seen = 0
    slow = 0
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        # The name ends at the first "{", blank or tab: three C-level finds beat a regex here.
        end = len(line)
        for sep in "{ \t":
            k = line.find(sep, 0, end)
            if k >= 0:
                end = k
        name = line[:end]
        if name in want:
            m = match(line, end)
            if m is not None:  # the fast form (inlined: this is the per-line hot path)
                lab, v, ts, exv, exts = m.groups()
                labels = (cache.get(lab) or _labels(lab)) if lab else {}
                last = exts or exv or ts
                # "_": Python's float() reads digit separators, the text format does not
                if labels is not None and "_" not in v and (last is None or _timestamp_ok(last)):
                    try:
                        value = float(v)
                    except ValueError:
                        pass  # e.g. "1,5": prometheus-client will say what is wrong
                    else:
                        seen += 1
                        add(name, labels, value)
                        continue
        elif end and not (name[-1].isspace() and name.rstrip() in want):
            continue  # not a needed family (a name followed by a unicode blank is one)
        # `{"name", ...}` (end == 0) or a needed line in a form only the library reads.
        slow += len(line)
        if slow > slow_path_max_bytes or len(line) > SLOW_LINE_MAX_BYTES:
            what = (
                f"a line of {len(line)} bytes (over {SLOW_LINE_MAX_BYTES})"
                if len(line) > SLOW_LINE_MAX_BYTES
                else f"over {slow_path_max_bytes} bytes of lines"
            )
            raise PageError(
                f"refused at {_where(lineno, line)}: {what} in forms other than the plain text "
                "format (blanks between tokens, tabs, quoted names); fix the exporter's output"
            )
        for sname, labels, value in _library_line(line, lineno):
            if sname in want:
                seen += 1
                add(sname, labels, value)
    if not seen:
        raise PageError(
            "no CoreDNS metrics on this page: is the URL a CoreDNS /metrics endpoint "
            "with the prometheus plugin enabled?"
        )
    return page


def _check_size(text: str) -> None:
    if len(text) > MAX_PAGE_BYTES:
        raise PageError(f"page is {len(text)} bytes, over the {MAX_PAGE_BYTES} byte limit")
