"""Which CoreDNS instances to score: a static list and a Prometheus file_sd file, sharded.

The file is re-read when its mtime or size changes (like Prometheus file_sd); a file that
does not parse keeps the last good list and is reported, so a bad edit never drops a fleet.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from .shard import owns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    url: str
    instance: str  # host:port, what Prometheus would call the instance


def make_target(text: str, scheme: str = "http", metrics_path: str = "/metrics") -> Target:
    """`host:port` or a full URL -> Target; ValueError with the reason otherwise."""
    text = text.strip()
    if not text:
        raise ValueError("empty target")
    url = text if "://" in text else f"{scheme}://{text}{metrics_path}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"target {text!r} is not host:port or an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise ValueError(f"target {text!r}: {exc}") from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Target(url, f"{host}:{port}")


def read_file_sd(path: Path) -> list[Target]:
    """Prometheus file_sd (JSON or YAML): [{targets: [host:port, ...], labels: {...}}, ...]."""
    doc = (
        yaml.safe_load(path.read_text())
        if path.suffix in (".yml", ".yaml")
        else json.loads(path.read_text())
    )
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a list of {{targets: [...], labels: {{...}}}} groups")
    out = []
    for group in doc:
        if not isinstance(group, dict) or not isinstance(group.get("targets", []), list):
            raise ValueError(f"{path}: each group needs a `targets` list, got {group!r}")
        labels = group.get("labels") or {}
        scheme = labels.get("__scheme__", "http")
        mpath = labels.get("__metrics_path__", "/metrics")
        out.extend(make_target(str(t), scheme, mpath) for t in group.get("targets", []))
    return out


class TargetSource:
    """Static targets plus an optional file_sd file, filtered to this replica's shard."""

    def __init__(
        self, static: list[str], file: str | None = None, shard: tuple[int, int] = (0, 1)
    ) -> None:
        self.static = [make_target(t) for t in static]
        self.file = Path(file) if file else None
        self.shard = shard
        self._file_targets: list[Target] = []
        self._stamp: tuple[int, int] | None = None
        self.file_errors = 0
        self.refresh()

    def refresh(self) -> None:
        if self.file is None:
            return
        try:
            st = self.file.stat()
        except OSError as exc:
            if self._stamp is not None or not self.file_errors:
                log.error(
                    "targets file %s: %s (keeping %d targets)",
                    self.file,
                    exc,
                    len(self._file_targets),
                )
            self.file_errors += 1
            self._stamp = None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._file_targets = read_file_sd(self.file)
            log.info("targets file %s: %d targets", self.file, len(self._file_targets))
        except (OSError, ValueError, yaml.YAMLError) as exc:
            self.file_errors += 1
            log.error(
                "targets file %s does not parse: %s (keeping the last good list)", self.file, exc
            )

    def targets(self) -> list[Target]:
        self.refresh()
        seen: dict[str, Target] = {}
        for t in [*self.static, *self._file_targets]:
            if owns(t.instance, self.shard):
                seen.setdefault(t.instance, t)
        return list(seen.values())
