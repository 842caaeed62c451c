"""Scrapes every instance's /metrics on a fixed step and keeps the raw samples compactly.

Series are interned (name+labels -> id) so an hour of a fleet fits in memory as arrays;
`frame()` turns them into the dataset's long table. Parsing is prometheus-client's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import requests
from prometheus_client.parser import text_string_to_metric_families

from coredns_anomaly.training.dataset import format_labels

log = logging.getLogger(__name__)


def parse_page(text: str) -> tuple[list[tuple[str, str, float]], dict[str, str]]:
    """(name, labels, value) of every sample on an exposition page, and the metric types."""
    samples, types = [], {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples.append((s.name, format_labels(s.labels), float(s.value)))
    return samples, types


class Recorder:
    """Accumulates scrapes: timestamps, instance ids, series ids and values as flat arrays."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, str], int] = {}
        self.instances: dict[str, int] = {}
        self.types: dict[str, str] = {}
        self._ts: list[np.ndarray] = []
        self._inst: list[np.ndarray] = []
        self._sid: list[np.ndarray] = []
        self._val: list[np.ndarray] = []
        self._lock = threading.Lock()

    def add(self, ts: float, instance: str, samples: list[tuple[str, str, float]]) -> None:
        with self._lock:
            self._add(ts, instance, samples)

    def _add(self, ts: float, instance: str, samples: list[tuple[str, str, float]]) -> None:
        iid = self.instances.setdefault(instance, len(self.instances))
        n = len(samples)
        sids = np.empty(n, dtype=np.int32)
        vals = np.empty(n, dtype=np.float64)
        for i, (name, labels, value) in enumerate(samples):
            key = (name, labels)
            sid = self.series.get(key)
            if sid is None:
                sid = self.series[key] = len(self.series)
            sids[i] = sid
            vals[i] = value
        self._ts.append(np.full(n, ts))
        self._inst.append(np.full(n, iid, dtype=np.int32))
        self._sid.append(sids)
        self._val.append(vals)

    def frame(self) -> pd.DataFrame:
        if not self._ts:
            return pd.DataFrame(columns=["timestamp", "instance", "name", "labels", "value"])
        sid = np.concatenate(self._sid)
        names = np.array([k[0] for k in self.series], dtype=object)
        labels = np.array([k[1] for k in self.series], dtype=object)
        insts = np.array(list(self.instances), dtype=object)
        return pd.DataFrame(
            {
                "timestamp": np.concatenate(self._ts),
                "instance": insts[np.concatenate(self._inst)],
                "name": names[sid],
                "labels": labels[sid],
                "value": np.concatenate(self._val),
            }
        )


class Sampler:
    """Scrapes targets concurrently at each step, like Prometheus with scrape_interval=step.

    Adds `up` and `scrape_duration_seconds` per target, as Prometheus does, so a failed scrape
    is a visible gap rather than a silent one.
    """

    def __init__(self, targets: dict[str, str], step: float, timeout: float | None = None):
        self.targets = targets  # instance -> metrics URL
        self.step = step
        self.timeout = timeout or max(0.5, min(step * 0.8, 10.0))
        self.recorder = Recorder()
        self.extra: list[Callable[[str], list[tuple[str, str, float]]]] = []
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(targets)))
        self._session = requests.Session()

    def _scrape(self, instance: str, url: str, ts: float) -> None:
        t0 = time.monotonic()
        try:
            resp = self._session.get(url, timeout=self.timeout)
            resp.raise_for_status()
            samples, types = parse_page(resp.text)
            self.recorder.types.update(types)
            up = 1.0
        except Exception as exc:  # any failure is a down target, never a crash
            log.debug("scrape %s failed: %s", instance, exc)
            samples, up = [], 0.0
        samples.append(("up", "", up))
        samples.append(("scrape_duration_seconds", "", time.monotonic() - t0))
        for fn in self.extra:
            samples.extend(fn(instance))
        self.recorder.add(ts, instance, samples)

    def scrape_all(self) -> None:
        ts = time.time()
        futures = [self._pool.submit(self._scrape, i, u, ts) for i, u in self.targets.items()]
        for f in futures:
            f.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
