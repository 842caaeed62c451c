"""`--shard i/n`: which targets this replica owns, with Prometheus' own `hashmod`.

The hash is Prometheus' relabel `hashmod` (md5 of the value, the last 8 bytes read as a big-endian
uint64, modulo n), so `--shard i/n` on the exporter keeps exactly the targets a Prometheus
`hashmod` relabel on `__address__` with `modulus: n` keeps for `regex: i`. Replicas split a fleet
with no coordination, and a Prometheus-side split and an exporter-side split agree.
"""

from __future__ import annotations

import hashlib
import re

_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """`"i/n"` -> (i, n) with 0 <= i < n; a clear ValueError otherwise."""
    m = _SHARD.match(text or "")
    if not m:
        raise ValueError(f"--shard must look like i/n (e.g. 0/3), got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text}: need n >= 1 and 0 <= i < n")
    return i, n


def hashmod(value: str, modulus: int) -> int:
    """Prometheus' relabel hashmod (model/relabel/relabel.go)."""
    digest = hashlib.md5(value.encode()).digest()
    return int.from_bytes(digest[8:], "big") % modulus


def owns(address: str, shard: tuple[int, int]) -> bool:
    i, n = shard
    return n == 1 or hashmod(address, n) == i
