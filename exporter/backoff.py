"""Failing targets are retried less often, so a broken or hostile one costs the step little.

Every scrape costs the step CPU (a connection, a request, a read, a parse), and a target that
fails every time (a 17 MB page over --sample-limit, a page that does not parse, headers sent a
byte a second) costs it for nothing. After `n` failures in a row a target sits out the next
2^(n-1) - 1 steps, at most MAX_BACKOFF_SECONDS of them: a single failure is retried at once (a
blip costs nothing), a target that stays broken is tried every ~16 s, and one answer resets
it. The steps it sits out are reported like its failures (`target_up 0`, no score, the last
reason in the message) but are not counted as errors: no scrape happened.

Measured in bench/hostile_targets.py: 10 hostile targets beside 50 healthy ones made the step
1.24x slower with every target scraped every step, no more than the count of targets (60/50)
explains. See docs/exporter.md "Hostile targets".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_BACKOFF_SECONDS = 16.0
REASON = "backoff"


@dataclass
class _Failing:
    failures: int = 0  # in a row
    skip: int = 0  # steps still to sit out
    reason: str = ""


class Backoff:
    """Which targets are due this step; fed each target's outcome after the step."""

    def __init__(self, max_seconds: float = MAX_BACKOFF_SECONDS) -> None:
        self.max_seconds = max_seconds
        self._failing: dict[str, _Failing] = {}

    def due(self, instance: str) -> bool:
        """True if `instance` is to be scraped this step (call once per step and target)."""
        f = self._failing.get(instance)
        if f is None or f.skip <= 0:
            return True
        f.skip -= 1
        return False

    def why(self, instance: str) -> str:
        f = self._failing[instance]
        return (
            f"failed {f.failures} scrapes in a row (last: {f.reason}); "
            "tried less often until it answers"
        )

    def record(self, instance: str, ok: bool, reason: str, step_seconds: float) -> None:
        """The outcome of a scrape of `instance` (scraped and parsed, or why not) this step."""
        if ok:
            self._failing.pop(instance, None)
            return
        f = self._failing.setdefault(instance, _Failing())
        f.failures += 1
        f.reason = reason or f.reason
        max_skip = max(0, math.floor(self.max_seconds / step_seconds + 1e-9) - 1)
        f.skip = min(2 ** min(f.failures - 1, 30) - 1, max_skip)

    def forget(self, keep: set[str]) -> None:
        """Drop targets that left the fleet."""
        for name in self._failing.keys() - keep:
            del self._failing[name]

    @property
    def failing(self) -> int:
        return len(self._failing)
