"""What the rules need from a model bundle's model.json, checked up front.

Only model.json is read (never model.tflite): rules are generated where the model is not run.
A missing or malformed field is a RulesError naming it, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from coredns_anomaly.exporter.bundle import BundleError, meta_field, read_meta


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
    median_delay_steps: float  # on the test split; 0 if the model detected nothing
    anomaly_types: tuple[str, ...]
    feature_names: tuple[str, ...]
    clear_steps: int = 1  # the exporter ends an anomaly after this many calm steps

    @property
    def max_score(self) -> float:
        """Highest normalised score the model can publish (inf for unbounded scores)."""
        return 1.0 / self.threshold if self.kind in BOUNDED_KINDS else math.inf


def load_model_facts(bundle: str | Path) -> ModelFacts:
    """Read model.json of a bundle directory (or the file itself)."""
    path = Path(bundle)
    if path.is_dir():
        path = path / "model.json"
    if not path.is_file():
        raise RulesError(f"{path} not found: --model takes a bundle directory with model.json")
    try:
        meta = read_meta(path)
        delay = meta_field(meta, "evaluation.test.median_delay_steps", path)
        facts = ModelFacts(
            kind=str(meta_field(meta, "model_kind", path)),
            sha256=str(meta_field(meta, "sha256", path)),
            step_seconds=float(meta_field(meta, "step_seconds", path)),
            window=int(meta_field(meta, "window", path)),
            debounce_steps=int(meta_field(meta, "decision_debounce_steps", path)),
            threshold=float(meta_field(meta, "decision.threshold", path)),
            median_delay_steps=0.0 if delay is None else float(delay),
            anomaly_types=tuple(str(n) for n in meta_field(meta, "anomaly_types.names", path)),
            feature_names=tuple(str(n) for n in meta_field(meta, "feature_names", path)),
            clear_steps=int(meta.get("decision_clear_steps") or 1),
        )
    except BundleError as exc:
        raise RulesError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise RulesError(f"{path}: a field has the wrong type: {exc}") from None
    problems = []
    if not (math.isfinite(facts.step_seconds) and facts.step_seconds > 0):
        problems.append(f"step_seconds {facts.step_seconds} is not positive")
    if facts.window < 1 or facts.debounce_steps < 1:
        problems.append("window and decision_debounce_steps must be >= 1")
    if not (math.isfinite(facts.threshold) and facts.threshold > 0):
        problems.append(f"decision.threshold {facts.threshold} is not positive")
    if not facts.feature_names:
        problems.append("feature_names is empty")
    if len(facts.sha256) != 64:
        problems.append("sha256 is not a 64-digit hex digest")
    if problems:
        raise RulesError(f"{path}: " + "; ".join(problems))
    return facts
