"""The model bundle as the exporter serves it (model.json's contract: contracts/bundle.py;
docs/exporter.md describes it).

Everything that turns raw feature rows into the model's input and its outputs into a decision
lives here, so training imports it instead of repeating it: standardisation, the window rule,
the type profile. A bundle is refused at load, with a message naming what differs, when its
model.json breaks the contract, or its checksum or feature set does not match this exporter;
nothing half-loaded ever serves.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coredns_anomaly.contracts.bundle import (
    BundleError,
    BundleMeta,
    short,
)
from coredns_anomaly.contracts.names import UNKNOWN_TYPE

from .baseline import BaselineSpec, BaselineSpecError, standardize
from .features import FEATURE_NAMES, Evidence
from .runtime import Runtime, RuntimeLoadError
from .suppress import Suppression

TYPE_PROFILE_STEPS = 3  # the type is read from the mean z-score of the last steps
MAX_MISSING = 0.5  # a window with more missing steps than this is not scored
MAX_MODEL_BYTES = 512 * 1024 * 1024

__all__ = [
    "Bundle", "BundleError", "load_bundle", "standardize", "type_profile", "window_ok",
    "windows_ok",
]  # fmt: skip


def type_profile(Z: np.ndarray, steps: int = TYPE_PROFILE_STEPS) -> np.ndarray:
    """Where the likely anomaly type is read: the mean z-scores of the last steps of each
    window, (n, W, F) -> (n, F). Training fits the class centroids in this space.

    Nearest class centroid in this space beat the classifier's and siamese's embeddings on
    type accuracy (their embeddings are trained to separate normal from anomalous, not
    classes), and it needs no model output, so every model kind shares it.
    """
    return Z[:, -steps:, :].mean(axis=1)


def nearest_types(
    profiles: np.ndarray, names: tuple[str, ...], centroids: np.ndarray, beyond: float
) -> list[str]:
    """Each profile's nearest class centroid, or UNKNOWN_TYPE when even that one is farther
    than `beyond` (learned on validation: most windows of a known class lie within it), so a
    fault of a kind never trained on is not named as one it resembles a little."""
    if not len(names) or not len(profiles):
        return [""] * len(profiles)
    d = np.linalg.norm(profiles[:, None, :] - centroids[None, :, :], axis=2)
    i, near = d.argmin(axis=1), d.min(axis=1)
    return [UNKNOWN_TYPE if near[k] > beyond else names[i[k]] for k in range(len(profiles))]


def windows_ok(missing: np.ndarray, window: int, max_missing: float = MAX_MISSING) -> np.ndarray:
    """Which windows are scored, for every window of `window` steps over per-step `missing`
    (T,): (T - window + 1,) bools. A window is scored when its last step is present and most of
    it is. The one window rule: the exporter asks it of each target's window (`window_ok`),
    training of every window of a recording."""
    missing = np.asarray(missing, bool)
    frac = np.convolve(missing.astype(float), np.ones(window), "valid") / window
    return ~missing[window - 1 :] & (frac <= max_missing)


def window_ok(missing: np.ndarray, max_missing: float = MAX_MISSING) -> bool:
    """Is this window (its steps' `missing`) scored: `windows_ok` of one window."""
    return bool(windows_ok(missing, len(missing), max_missing)[0])


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: BundleMeta  # model.json as read (a reload compares it)
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
    # An anomaly ends after this many consecutive calm steps (score < 1), not at the first:
    # a state that hovers around the threshold is one alarm, not one per crossing.
    clear_steps: int = 1
    # A window farther than this from every class centroid is typed "unknown" (bundles from
    # before it existed never say unknown).
    unknown_beyond: float = math.inf
    # Engineers' judged false alarms, remembered (exporter/suppress.py); None: no verdicts.
    suppression: Suppression | None = None

    @property
    def n_features(self) -> int:
        return len(FEATURE_NAMES)

    @property
    def version(self) -> str:
        return self.meta.project_version

    def runtime(self) -> Runtime:
        """A new interpreter for this bundle. A failure is a BundleError like any other refusal,
        so whoever swaps bundles (hot reload) catches one exception type."""
        try:
            return Runtime(self.flat, self.window, self.n_features)
        except RuntimeLoadError as exc:
            raise BundleError(f"{self.path / 'model.tflite'}: {exc}") from exc

    def held_back(self, Z: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Per window: a judged false alarm again (no alarm), from its raw score."""
        if self.suppression is None:
            return np.zeros(len(Z), bool)
        return self.suppression.holds_back(type_profile(Z), raw)

    def nearest_types(self, Z: np.ndarray) -> list[str]:
        return nearest_types(
            type_profile(Z), self.type_names, self.type_centroids, self.unknown_beyond
        )


def load_bundle(path: str | Path) -> Bundle:
    """Read, check and test-invoke a bundle directory; BundleError says what is wrong.

    Any malformed input (a missing or unreadable file, a field of the wrong type or range
    anywhere in model.json, a model the interpreter cannot load or run) raises BundleError and
    nothing else: the CLI prints it as one line, and a hot reload that gets one keeps serving
    the old bundle. Unforeseen exceptions from the parts below are turned into BundleError too
    (naming their type), so that a new kind of bad file is a refused reload, not a dead
    exporter.
    """
    path = Path(path)
    try:
        return _load(path)
    except BundleError:
        raise
    except (
        ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
        RecursionError, MemoryError, OSError, RuntimeError,
    ) as exc:  # fmt: skip
        raise BundleError(
            f"{path}: the bundle could not be read ({short(exc)}); re-export it"
        ) from exc


def _load(path: Path) -> Bundle:
    jpath, mpath = path / "model.json", path / "model.tflite"
    for p in (jpath, mpath):
        if not p.is_file():
            raise BundleError(
                f"{p} is missing: a bundle is a directory with model.json and model.tflite"
            )
    meta = BundleMeta.read(jpath, FEATURE_NAMES)
    try:
        size = mpath.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise BundleError(f"{mpath} is {size} bytes, over {MAX_MODEL_BYTES}")
        flat = mpath.read_bytes()
    except OSError as exc:
        raise BundleError(f"{mpath} cannot be read: {short(exc)}") from None
    digest = hashlib.sha256(flat).hexdigest()
    if digest != meta.sha256:
        raise BundleError(
            f"{mpath}: sha256 {digest[:12]}... does not match model.json's {meta.sha256[:12]}...: "
            "the two files are from different exports (or a copy is incomplete)"
        )
    F = len(FEATURE_NAMES)
    try:
        baseline = BaselineSpec.from_dict(meta.baseline, F)
        evidence = Evidence.from_dict(meta.evidence)
    except (BaselineSpecError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, BundleError):
            raise
        if isinstance(exc, OverflowError):  # int(1e999) or float(10**400) in a field
            exc = f"input.baseline or input.evidence holds a number out of range ({exc})"
        raise BundleError(f"{jpath}: {exc}") from None
    suppression = None
    if meta.suppression is not None:
        try:
            suppression = Suppression.from_dict(meta.suppression, F)
        except ValueError as exc:
            raise BundleError(f"{jpath}: {exc}; re-export the bundle") from None
    types = meta.anomaly_types
    cents = np.asarray(types.centroids, float).reshape(len(types.names), F)
    bundle = Bundle(
        path, meta, flat, meta.model_kind, meta.window, meta.step_seconds, baseline,
        meta.threshold, meta.debounce_steps, types.names, cents, digest, evidence,
        meta.clear_steps, types.unknown_beyond, suppression,
    )  # fmt: skip
    runtime = bundle.runtime()  # BundleError if the interpreter cannot load it
    try:
        runtime.check()
    except RuntimeLoadError as exc:
        raise BundleError(f"{mpath}: {exc}") from exc
    return bundle
