"""Datasets -> feature matrices, through the exporter's feature code (the one source of truth).

The dataset keeps raw samples; here each scrape becomes a Page again and goes through the
same FeatureState the exporter runs, so training sees exactly what the exporter will see.
A failed scrape (up=0) yields a NaN row and leaves the state alone, as in the exporter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..exporter.features import FEATURE_NAMES, FeatureState
from ..exporter.page import Page
from .dataset import Dataset, parse_labels


@dataclass
class InstanceFeatures:
    instance: str
    times: np.ndarray  # scrape timestamps, seconds
    X: np.ndarray  # (T, F) raw feature values, NaN = masked
    labels: np.ndarray  # (T,) anomaly class or "normal"

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES


def instance_pages(ds: Dataset, instance: str) -> Iterator[tuple[float, Page | None]]:
    """Each scrape of one instance as the exporter would have parsed it (None when up=0)."""
    df = ds.samples[ds.samples["instance"] == instance]
    df = df.sort_values("timestamp", kind="stable")
    names = df["name"].astype(str).to_numpy()
    labels = df["labels"].astype(str).to_numpy()
    values = df["value"].to_numpy(dtype=float)
    ts = df["timestamp"].to_numpy(dtype=float)
    bounds = np.flatnonzero(np.diff(ts)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(ts)]])
    label_cache: dict[str, dict[str, str]] = {}
    for a, b in zip(starts, ends, strict=True):
        page = Page()
        up = 1.0
        for i in range(a, b):
            lt = labels[i]
            lb = label_cache.get(lt)
            if lb is None:
                lb = label_cache[lt] = parse_labels(lt) if lt else {}
            if names[i] == "up":
                up = values[i]
            page.add(names[i], lb, values[i])
        yield float(ts[a]), (page if up > 0 else None)


def featurize(ds: Dataset, instances: list[str] | None = None) -> list[InstanceFeatures]:
    """One feature matrix per instance, rows on the dataset's scrape times."""
    out = []
    for inst in instances or ds.instances:
        state = FeatureState()
        times, rows = [], []
        for t, page in instance_pages(ds, inst):
            times.append(t)
            rows.append(
                state.update(page, t) if page is not None else np.full(len(FEATURE_NAMES), np.nan)
            )
        times_a = np.asarray(times, float)
        X = np.asarray(rows, float).reshape(len(times), len(FEATURE_NAMES))
        out.append(InstanceFeatures(inst, times_a, X, ds.label_at(inst, times_a)))
    return out
