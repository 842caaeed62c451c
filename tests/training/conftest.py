"""Small synthetic multivariate series: the detector must work on any metrics, not only CoreDNS."""

from __future__ import annotations

import numpy as np
import pytest

from coredns_anomaly.training.series import NORMAL, Series


def synthetic(instance: str, steps: int = 700, seed: int = 0, classes=("spike", "drift")) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * 5.0
    X = rng.normal(0, 1, (steps, 6)) + np.sin(t / 300)[:, None]
    labels = np.full(steps, NORMAL, dtype=object)
    for k, start in enumerate(range(60, steps - 40, 90)):
        cls = classes[k % len(classes)]
        end = start + 25
        labels[start:end] = cls
        if cls == "spike":
            X[start:end, 1] += 6
        elif cls == "drift":
            X[start:end, 3] -= 5
        else:  # a class unseen in training: two features move together
            X[start:end, 4] += 4
            X[start:end, 5] += 4
    return Series(instance, t, X, labels, tuple(f"m{i}" for i in range(6)))


@pytest.fixture(scope="session")
def make_series():
    return synthetic


@pytest.fixture(scope="session")
def series_pair():
    return [synthetic("a", seed=1)], [synthetic("a", seed=2, steps=400)]
