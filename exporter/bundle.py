"""The model bundle as the exporter reads it (the contract; docs/exporter.md describes it).

Everything that turns raw feature rows into the model's input and its outputs into a decision
lives here, so training imports it instead of repeating it: standardisation, the window rule,
the type profile. A bundle is refused at load, with a message naming what differs, when its
checksum, schema or feature set does not match this exporter; nothing half-loaded ever serves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baseline import BaselineSpec, BaselineSpecError, standardize
from .features import FEATURE_NAMES, Evidence
from .runtime import Runtime, RuntimeLoadError

# 2: every instance against its own baseline (`input.baseline`). 1 scaled every instance with
# one lab-fitted mean/scale, which flags any CoreDNS unlike the lab: refused with the fix.
SCHEMA_VERSIONS = (2,)
NORMALIZATION = "instance_baseline"
TYPE_PROFILE_STEPS = 3  # the type is read from the mean z-score of the last steps
MAX_MISSING = 0.5  # a window with more missing steps than this is not scored


class BundleError(ValueError):
    """A bundle the exporter must not serve; the message says what is wrong and what to do."""


__all__ = ["Bundle", "BundleError", "load_bundle", "standardize", "type_profile", "window_ok"]


def type_profile(Z: np.ndarray, steps: int = TYPE_PROFILE_STEPS) -> np.ndarray:
    """Mean scaled features of the last steps of each window: (n, W, F) -> (n, F)."""
    return Z[:, -steps:, :].mean(axis=1)


def window_ok(missing: np.ndarray, max_missing: float = MAX_MISSING) -> bool:
    """A window is scored when its last step is present and most of it is (training's rule)."""
    return (not missing[-1]) and missing.mean() <= max_missing


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: dict[str, Any]
    flat: bytes
    kind: str
    window: int
    step_seconds: float
    baseline: BaselineSpec
    threshold: float
    debounce_steps: int
    type_names: tuple[str, ...]
    type_centroids: np.ndarray  # (types, F)
    sha256: str
    evidence: Evidence  # how many events an estimated feature reads (exporter/features.py)

    @property
    def n_features(self) -> int:
        return len(FEATURE_NAMES)

    @property
    def version(self) -> str:
        return str(self.meta.get("versions", {}).get("project", "unknown"))

    def runtime(self) -> Runtime:
        return Runtime(self.flat, self.window, self.n_features)

    def nearest_types(self, Z: np.ndarray) -> list[str]:
        if not len(self.type_names) or not len(Z):
            return [""] * len(Z)
        prof = type_profile(Z)
        d = np.linalg.norm(prof[:, None, :] - self.type_centroids[None, :, :], axis=2)
        return [self.type_names[i] for i in d.argmin(axis=1)]


def read_meta(jpath: Path) -> dict[str, Any]:
    """model.json as a dict. The rules generator reads bundles through this too."""
    try:
        meta = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{jpath} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise BundleError(f"{jpath} must hold a JSON object")
    return meta


def meta_field(meta: dict, dotted: str, where: str | Path = "model.json") -> Any:
    """A dotted field of model.json; a missing one names itself and the fix."""
    cur: Any = meta
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise BundleError(
                f"{where} lacks `{dotted}`: re-export the bundle with `coredns-anomaly train`"
            )
        cur = cur[part]
    return cur


def load_bundle(path: str | Path) -> Bundle:
    """Read, check and test-invoke a bundle directory; BundleError says what is wrong."""
    path = Path(path)
    jpath, mpath = path / "model.json", path / "model.tflite"
    for p in (jpath, mpath):
        if not p.is_file():
            raise BundleError(
                f"{p} is missing: a bundle is a directory with model.json and model.tflite"
            )
    meta = read_meta(jpath)
    schema = meta.get("schema_version")
    if schema == 1:
        raise BundleError(
            f"{jpath}: schema_version 1 scales every CoreDNS with one lab-fitted scaler, which "
            "reads any cluster unlike the lab as anomalous; use models/default of this release, "
            "or retrain with `coredns-anomaly train` / `coredns-anomaly fit`"
        )
    if schema not in SCHEMA_VERSIONS:
        raise BundleError(
            f"{jpath}: schema_version {schema!r} is not one this exporter reads "
            f"({', '.join(map(str, SCHEMA_VERSIONS))}); upgrade the exporter or re-export"
        )
    flat = mpath.read_bytes()
    digest = hashlib.sha256(flat).hexdigest()
    want = meta_field(meta, "sha256")
    if digest != want:
        raise BundleError(
            f"{mpath}: sha256 {digest[:12]}... does not match model.json's {str(want)[:12]}...: "
            "the two files are from different exports (or a copy is incomplete)"
        )
    names = tuple(meta_field(meta, "feature_names"))
    if names != FEATURE_NAMES:
        missing = [n for n in FEATURE_NAMES if n not in names]
        extra = [n for n in names if n not in FEATURE_NAMES]
        detail = (
            f"missing {missing}, unknown {extra}" if missing or extra else "same names, other order"
        )
        raise BundleError(
            f"{jpath}: the model's features differ from this exporter's ({detail}); "
            "use an exporter of the version that trained it, or retrain"
        )
    F = len(names)
    try:
        window = int(meta_field(meta, "window"))
        step = float(meta_field(meta, "step_seconds"))
        norm = meta_field(meta, "input.normalization")
        if norm != NORMALIZATION:
            raise BundleError(
                f"{jpath}: input.normalization {norm!r} is not {NORMALIZATION!r}; re-export"
            )
        baseline = BaselineSpec.from_dict(meta_field(meta, "input.baseline"), F)
        evidence = Evidence.from_dict(meta_field(meta, "input.evidence"))
        threshold = float(meta_field(meta, "decision.threshold"))
        debounce = int(meta.get("decision_debounce_steps", 1) or 1)
        types = meta.get("anomaly_types") or {}
        tnames = tuple(str(n) for n in types.get("names", []))
        cents = np.asarray(types.get("centroids", []), float).reshape(len(tnames), -1)
    except BaselineSpecError as exc:
        raise BundleError(f"{jpath}: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise BundleError(f"{jpath}: a field has the wrong type: {exc}") from exc
    problems = []
    if window < 1:
        problems.append(f"window {window} < 1")
    if not step > 0:
        problems.append(f"step_seconds {step} is not positive")
    if not threshold > 0:
        problems.append(f"decision.threshold {threshold} is not positive")
    if len(tnames) and cents.shape != (len(tnames), F):
        problems.append(
            f"anomaly_types.centroids has shape {cents.shape}, need ({len(tnames)}, {F})"
        )
    if problems:
        raise BundleError(f"{jpath}: " + "; ".join(problems))
    bundle = Bundle(
        path, meta, flat, str(meta.get("model_kind", "unknown")), window, step, baseline,
        threshold, max(1, debounce), tnames, cents, digest, evidence,
    )  # fmt: skip
    try:
        bundle.runtime().check()
    except RuntimeLoadError as exc:
        raise BundleError(f"{mpath}: {exc}") from exc
    return bundle
