"""Datasets -> feature matrices, through the exporter's feature code (the one source of truth).

The dataset keeps raw samples; here each scrape becomes a Page again and goes through the
same FeatureState the exporter runs, so training sees exactly what the exporter will see.
A failed scrape (up=0) yields a NaN row and leaves the state alone, as in the exporter.
"""

from __future__ import annotations

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


def featurize(ds: Dataset, instances: list[str] | None = None) -> list[InstanceFeatures]:
    """One feature matrix per instance, rows on the dataset's scrape times."""
    out = []
    label_cache: dict[str, dict[str, str]] = {}
    for inst in instances or ds.instances:
        df = ds.samples[ds.samples["instance"] == inst]
        df = df.sort_values("timestamp", kind="stable")
        names = df["name"].astype(str).to_numpy()
        labels = df["labels"].astype(str).to_numpy()
        values = df["value"].to_numpy(dtype=float)
        ts = df["timestamp"].to_numpy(dtype=float)
        bounds = np.flatnonzero(np.diff(ts)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(ts)]])
        state = FeatureState()
        times = ts[starts]
        X = np.full((len(starts), len(FEATURE_NAMES)), np.nan)
        for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
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
            if up > 0:
                X[k] = state.update(page, times[k])
        out.append(InstanceFeatures(inst, times, X, ds.label_at(inst, times)))
    return out
