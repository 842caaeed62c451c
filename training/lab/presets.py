"""Named lab runs. `shipped` made data/lab-v1; `demo` is the README's short run."""

from __future__ import annotations

from dataclasses import dataclass

from .faults import FAULT_CLASSES


@dataclass(frozen=True)
class Preset:
    instances: int
    step: float
    seed: int
    base_rates: tuple[float, ...]
    classes: tuple[str, ...]
    episodes_per_class: int
    warmup: float
    gap: tuple[float, float]
    duration: tuple[float, float]
    benign_probability: float


PRESETS = {
    # The shipped dataset: a fleet of 4, every class 8 times at spread intensities.
    "shipped": Preset(
        instances=4, step=2.0, seed=2026, base_rates=(110.0, 140.0, 170.0, 200.0),
        classes=FAULT_CLASSES, episodes_per_class=8, warmup=60.0,
        gap=(35.0, 75.0), duration=(30.0, 70.0), benign_probability=0.6,
    ),
    # A couple of minutes on one instance: the README's first look.
    "demo": Preset(
        instances=1, step=2.0, seed=1, base_rates=(150.0,),
        classes=("upstream_latency", "random_subdomain"), episodes_per_class=1, warmup=30.0,
        gap=(20.0, 25.0), duration=(25.0, 30.0), benign_probability=1.0,
    ),
}  # fmt: skip
