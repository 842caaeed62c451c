"""RFC 3339 parsing and formatting, stdlib only.

Alertmanager sends Go's RFC3339Nano (nine fraction digits, any offset, and the zero time
``0001-01-01T00:00:00Z`` for "not ended"). ``datetime.fromisoformat`` accepts more than RFC 3339
and chokes on nanoseconds in older Pythons, so the grammar is spelled out here once and shared by
the receiver and the label file.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z",
    re.ASCII,  # \d would otherwise match any Unicode digit
)

# Go's zero time.Time; Alertmanager uses it as endsAt of alerts that are still firing.
ZERO_TIME = datetime(1, 1, 1, tzinfo=timezone.utc)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (fractions truncated to µs).

    Raises ValueError with a short reason for anything else, including instants that fall
    outside datetime's range once moved to UTC.
    """
    if not isinstance(text, str):
        raise ValueError("not a string")
    return _parse(text)


@lru_cache(maxsize=8192)  # Alertmanager repeats the same few timestamps in every notification
def _parse(text: str) -> datetime:
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    micro = int((m.group(7) or "0").ljust(6, "0")[:6])
    if second == 60:  # leap second: clamp, as Go does when it parses one
        second = 59
    try:
        if m.group(8):
            tz = timezone.utc
        else:
            oh, om = int(m.group(10)), int(m.group(11))
            if oh > 23 or om > 59:
                raise ValueError("offset out of range")
            sign = 1 if m.group(9) == "+" else -1
            tz = timezone(sign * timedelta(hours=oh, minutes=om))
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(
            timezone.utc
        )
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"invalid timestamp {text[:64]!r}: {exc}") from None


def format_rfc3339(value: datetime) -> str:
    """UTC, 'Z' suffix, fraction only when non-zero: 2026-11-22T03:00:00Z."""
    if value.tzinfo is None:
        raise ValueError("naive datetime; label times must be timezone-aware")
    value = value.astimezone(timezone.utc)
    text = _seconds(value)
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def storage_key(value: datetime) -> str:
    """Fixed-width UTC form used in the database, so string order is time order."""
    value = value.astimezone(timezone.utc)
    return f"{_seconds(value)}.{value.microsecond:06d}Z"


def _seconds(v: datetime) -> str:
    # Not strftime: glibc prints year 1 as "1", and Go's zero time must round-trip.
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
