"""Logging that a hostile or broken target cannot turn into a flood.

Every failure is counted in /metrics; the log says what went wrong, at most once per key (a
target) per interval, with how many more of the same were left out since the last line.
"""

from __future__ import annotations

import logging
import threading
import time

MAX_KEYS = 10_000  # targets come and go; forget them all rather than grow without end


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.log, self.interval = logger, interval
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: object) -> bool:
        """Log `msg % args` for `key` unless it logged within `interval`; True if it did."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._skipped[key] = self._skipped.get(key, 0) + 1
                return False
            if len(self._last) >= MAX_KEYS:
                self._last.clear()
                self._skipped.clear()
            self._last[key] = now
            skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += " (%d more since the last report)"
            args = (*args, skipped)
        self.log.log(level, msg, *args)
        return True
