"""Alert matchers in Prometheus' syntax: which received alerts may become weak labels.

Engineers already know this syntax from Alertmanager routes and PromQL selectors, so the
setting reads the way their rules do: ``alertname=~"CoreDNS.*",severity!="info"``. The four
operators are ``=``, ``!=``, ``=~`` and ``!~``; regular expressions are fully anchored (as in
Prometheus), and a label the alert lacks has the value ``""``. Stdlib only (training imports
the webhook's label modules without Flask).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from coredns_anomaly.contracts.names import OWN_ALERTNAMES

__all__ = [
    "DEFAULT_WEAK_MATCHERS", "OWN_ALERTNAMES", "Matcher", "MatcherError", "match_all",
    "parse_matchers",
]  # fmt: skip

# A weak label must say which CoreDNS it is about: the CoreDNS mixin's alert names all start
# with "CoreDNS" (CoreDNSDown, CoreDNSErrorsHigh, CoreDNSLatencyHigh, ...). Alerts that name no
# instance are dropped whatever the matchers say (see store.label_records).
DEFAULT_WEAK_MATCHERS = 'alertname=~"CoreDNS.*"'
# This project's own alerts (contracts/names.py ALERT_PREFIX): never weak labels, a model would
# only learn from itself. OWN_ALERTNAMES is the regular expression.

_MATCHER = re.compile(
    r'\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*'
)


class MatcherError(ValueError):
    """A matcher string that cannot be read; the message shows the part and the syntax."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "") or ""
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = re.fullmatch(self.value, v) is not None
        return hit if self.op == "=~" else not hit


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """``a="x",b=~"y.*"`` -> matchers (all must hold); "" -> none (every alert matches)."""
    text = text.strip().removeprefix("{").removesuffix("}")
    out: list[Matcher] = []
    pos = 0
    while pos < len(text) and text[pos:].strip():
        m = _MATCHER.match(text, pos)
        if m is None:
            raise MatcherError(
                f"cannot read the matcher at {text[pos : pos + 40]!r}: write "
                'name="value", name!="value", name=~"regex" or name!~"regex", comma-separated'
            )
        value = re.sub(r"\\(.)", r"\1", m.group("value"))
        if m.group("op") in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise MatcherError(
                    f"matcher {m.group('name')}: bad regex {value!r}: {exc}"
                ) from None
        out.append(Matcher(m.group("name"), m.group("op"), value))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise MatcherError(f"expected ',' between matchers at {text[pos : pos + 40]!r}")
            pos += 1
    return tuple(out)


def match_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
