"""What the rules need from a model bundle's model.json, checked up front.

Only model.json is read (never model.tflite): rules are generated where the model is not run.
A missing or malformed field is a RulesError naming it, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from coredns_anomaly.contracts.bundle import BundleError, BundleMeta


class RulesError(ValueError):
    """Input the rules cannot be generated from; the message says what to fix."""


# Score kinds whose raw score is bounded by 1 (a probability, or d_n / (d_n + d_a)).
BOUNDED_KINDS = ("classifier", "siamese")


@dataclass(frozen=True)
class ModelFacts:
    kind: str
    sha256: str
    step_seconds: float
    window: int
    debounce_steps: int
    threshold: float  # raw decision threshold; the exporter publishes raw / threshold
    median_delay_steps: float  # where `delay_measured_on` says; 0 if nothing was detected
    anomaly_types: tuple[str, ...]
    feature_names: tuple[str, ...]
    clear_steps: int = 1  # the exporter ends an anomaly after this many calm steps
    # where the median delay was measured, as the rule file's header names it: "test" (the
    # test split of `coredns-anomaly train`) or "injected-fault" (`coredns-anomaly fit`)
    delay_measured_on: str = "test"

    @property
    def max_score(self) -> float:
        """Highest normalised score the model can publish (inf for unbounded scores)."""
        return 1.0 / self.threshold if self.kind in BOUNDED_KINDS else math.inf


def load_model_facts(bundle: str | Path) -> ModelFacts:
    """Read model.json of a bundle directory (or the file itself), through the bundle
    contract's reader: the exporter reads the same fields by the same rules. The rules also
    need a median delay (for the rule file's header), which the contract leaves optional:
    `coredns-anomaly train` records the test split's, `coredns-anomaly fit` (no test split)
    the one measured on lab faults injected into the fleet's own data."""
    path = Path(bundle)
    if path.is_dir():
        path = path / "model.json"
    if not path.is_file():
        raise RulesError(f"{path} not found: --model takes a bundle directory with model.json")
    try:
        meta = BundleMeta.read(path)
        field, measured_on = "evaluation.test.median_delay_steps", "test"
        if "fit" in meta.info and "evaluation" not in meta.info:
            field, measured_on = "fit.injected_median_delay_steps", "injected-fault"
        delay = meta.info_field(field, path)
        if delay is None:  # the model detected nothing
            delay = 0.0
        elif isinstance(delay, bool) or not isinstance(delay, int | float):
            raise BundleError(
                f"{path}: a field has the wrong type: `{field}` is {delay!r:.40}, must be a number"
            )
        delay = float(delay) if abs(delay) < 1e300 else math.inf
    except BundleError as exc:
        raise RulesError(str(exc)) from None
    return ModelFacts(
        kind=meta.model_kind,
        sha256=meta.sha256,
        step_seconds=meta.step_seconds,
        window=meta.window,
        debounce_steps=meta.debounce_steps,
        threshold=meta.threshold,
        median_delay_steps=delay,
        anomaly_types=meta.anomaly_types.names,
        feature_names=meta.feature_names,
        clear_steps=meta.clear_steps,
        delay_measured_on=measured_on,
    )
