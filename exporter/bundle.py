"""The model bundle as the exporter reads it (the contract; docs/exporter.md describes it).

Everything that turns raw feature rows into the model's input and its outputs into a decision
lives here, so training imports it instead of repeating it: standardisation, the window rule,
the type profile. A bundle is refused at load, with a message naming what differs, when its
checksum, schema or feature set does not match this exporter; nothing half-loaded ever serves.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .baseline import BaselineSpec, BaselineSpecError, standardize
from .features import FEATURE_NAMES, Evidence
from .runtime import Runtime, RuntimeLoadError
from .suppress import Suppression

# 2: every instance against its own baseline (`input.baseline`). 1 scaled every instance with
# one lab-fitted mean/scale, which flags any CoreDNS unlike the lab: refused with the fix.
SCHEMA_VERSIONS = (2,)
NORMALIZATION = "instance_baseline"
TYPE_PROFILE_STEPS = 3  # the type is read from the mean z-score of the last steps
MAX_MISSING = 0.5  # a window with more missing steps than this is not scored
MAX_META_BYTES = 4 * 1024 * 1024  # model.json is ~10 KB; a huge one is not ours
MAX_META_DEPTH = 32  # model.json nests ~5 deep; deeper JSON would blow the stack when compared
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_WINDOW = 100_000
MAX_DEBOUNCE = 100_000
# An anomaly lasts until this long of calm (score < 1): a state that hovers around the
# threshold (a cache still evicting a flood's junk names minutes after it) is one alarm.
CLEAR_SECONDS = 30.0


def clear_steps(step_seconds: float) -> int:
    """`decision_clear_steps` for a bundle of this step: CLEAR_SECONDS of calm, at least 1."""
    return max(1, math.ceil(CLEAR_SECONDS / step_seconds - 1e-9))


MAX_CENTROID = 1e6


class BundleError(ValueError):
    """A bundle the exporter must not serve; the message says what is wrong and what to do.

    Always one line (the CLI prints it as is, the reload log writes it as one record) and of
    bounded length, whatever the input quoted into it.
    """

    def __init__(self, message: object) -> None:
        text = " ".join(str(message).split())
        super().__init__(text if len(text) <= 2000 else text[:1997] + "...")


__all__ = ["Bundle", "BundleError", "load_bundle", "standardize", "type_profile", "window_ok"]


def type_profile(Z: np.ndarray, steps: int = TYPE_PROFILE_STEPS) -> np.ndarray:
    """Mean scaled features of the last steps of each window: (n, W, F) -> (n, F)."""
    return Z[:, -steps:, :].mean(axis=1)


UNKNOWN_TYPE = "unknown"  # a window far from every known class: no class is guessed


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
        versions = self.meta.get("versions")
        return str(versions.get("project", "unknown")) if isinstance(versions, dict) else "unknown"

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


def read_meta(jpath: Path) -> dict[str, Any]:
    """model.json as a dict. The rules generator reads bundles through this too.

    Refused with BundleError: unreadable, not UTF-8, not JSON, larger than MAX_META_BYTES,
    nested deeper than MAX_META_DEPTH (a deeper document would exhaust the stack wherever it
    is walked or compared later), integers of more digits than Python converts, not an object.
    """
    try:
        size = jpath.stat().st_size
        if size > MAX_META_BYTES:
            raise BundleError(f"{jpath} is {size} bytes, over {MAX_META_BYTES}: not a model.json")
        meta = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{jpath} is not valid JSON: {_short(exc)}") from None
    if not isinstance(meta, dict):
        raise BundleError(f"{jpath} must hold a JSON object")
    if _depth(meta) > MAX_META_DEPTH:
        raise BundleError(f"{jpath} nests deeper than {MAX_META_DEPTH} levels: not a model.json")
    return meta


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _depth(doc: Any) -> int:
    """Nesting depth of a JSON document, without recursion (it may be deep)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_META_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


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


def _wrong(where: Path, dotted: str, value: Any, want: str) -> BundleError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return BundleError(f"{where}: `{dotted}` is {shown}, must be {want}; re-export the bundle")


def _number(meta: dict, dotted: str, where: Path, lo: float, hi: float) -> float:
    """A finite JSON number in [lo, hi] (not a bool, not a string)."""
    v = meta_field(meta, dotted, where)
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _wrong(where, dotted, v, "a number")
    try:
        f = float(v)
    except OverflowError:
        f = math.inf
    if not (math.isfinite(f) and lo <= f <= hi):
        raise _wrong(where, dotted, v, f"a finite number in [{lo:g}, {hi:g}]")
    return f


def _integer(meta: dict, dotted: str, where: Path, lo: int, hi: int) -> int:
    """A JSON integer in [lo, hi] (an integral float such as 8.0 is accepted)."""
    f = _number(meta, dotted, where, lo, hi)
    if f != int(f):
        raise _wrong(where, dotted, meta_field(meta, dotted, where), "an integer")
    return int(f)


def _anomaly_types(meta: dict, jpath: Path, n_features: int) -> tuple[tuple[str, ...], np.ndarray]:
    """(names, centroids (types, F)) from the optional `anomaly_types` object."""
    types = meta.get("anomaly_types")
    if types is None:
        return (), np.zeros((0, n_features))
    if not isinstance(types, dict):
        raise _wrong(jpath, "anomaly_types", types, "an object with names and centroids")
    names = types.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _wrong(jpath, "anomaly_types.names", names, "a list of strings")
    cents = types.get("centroids", [])
    shape_ok = isinstance(cents, list) and len(cents) == len(names)
    rows_ok = shape_ok and all(
        isinstance(row, list)
        and len(row) == n_features
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in row)
        for row in cents
    )
    if not rows_ok:
        shape = f"{len(cents)} rows" if isinstance(cents, list) else f"a {type(cents).__name__}"
        raise BundleError(
            f"{jpath}: anomaly_types.centroids has shape ({shape}), need ({len(names)}, "
            f"{n_features}) numbers; re-export the bundle"
        )
    try:
        arr = np.asarray(cents, float).reshape(len(names), n_features)
    except OverflowError:
        arr = np.full((len(names), n_features), np.inf)
    if not (np.isfinite(arr).all() and (np.abs(arr) <= MAX_CENTROID).all()):
        # centroids are mean z-scores, clipped at input.baseline.clip when they were fitted
        raise BundleError(
            f"{jpath}: anomaly_types.centroids holds a number that is not a z-score "
            f"(non-finite or beyond +-{MAX_CENTROID:g})"
        )
    return tuple(names), arr


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
            f"{path}: the bundle could not be read ({_short(exc)}); re-export it"
        ) from exc


def _load(path: Path) -> Bundle:
    jpath, mpath = path / "model.json", path / "model.tflite"
    for p in (jpath, mpath):
        if not p.is_file():
            raise BundleError(
                f"{p} is missing: a bundle is a directory with model.json and model.tflite"
            )
    meta = read_meta(jpath)
    schema = meta.get("schema_version")
    if schema == 1 and not isinstance(schema, bool):
        raise BundleError(
            f"{jpath}: schema_version 1 scales every CoreDNS with one lab-fitted scaler, which "
            "reads any cluster unlike the lab as anomalous; use models/default of this release, "
            "or retrain with `coredns-anomaly train` / `coredns-anomaly fit`"
        )
    if isinstance(schema, bool) or not isinstance(schema, int) or schema not in SCHEMA_VERSIONS:
        raise BundleError(
            f"{jpath}: schema_version {schema!r:.40} is not one this exporter reads "
            f"({', '.join(map(str, SCHEMA_VERSIONS))}); upgrade the exporter or re-export"
        )
    try:
        size = mpath.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise BundleError(f"{mpath} is {size} bytes, over {MAX_MODEL_BYTES}")
        flat = mpath.read_bytes()
    except OSError as exc:
        raise BundleError(f"{mpath} cannot be read: {_short(exc)}") from None
    digest = hashlib.sha256(flat).hexdigest()
    want = meta_field(meta, "sha256", jpath)
    if not isinstance(want, str):
        raise _wrong(jpath, "sha256", want, "the hex sha256 of model.tflite")
    if digest != want:
        raise BundleError(
            f"{mpath}: sha256 {digest[:12]}... does not match model.json's {want[:12]}...: "
            "the two files are from different exports (or a copy is incomplete)"
        )
    names = meta_field(meta, "feature_names", jpath)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _wrong(jpath, "feature_names", names, "a list of feature names")
    if tuple(names) != FEATURE_NAMES:
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
    window = _integer(meta, "window", jpath, 1, MAX_WINDOW)
    step = _number(meta, "step_seconds", jpath, 1e-3, 86_400.0)
    norm = meta_field(meta, "input.normalization", jpath)
    if norm != NORMALIZATION:
        raise BundleError(
            f"{jpath}: input.normalization {str(norm)[:40]!r} is not {NORMALIZATION!r}; re-export"
        )
    try:
        baseline = BaselineSpec.from_dict(meta_field(meta, "input.baseline", jpath), F)
        evidence = Evidence.from_dict(meta_field(meta, "input.evidence", jpath))
    except (BaselineSpecError, ValueError, TypeError, OverflowError) as exc:
        if isinstance(exc, BundleError):
            raise
        if isinstance(exc, OverflowError):  # int(1e999) or float(10**400) in a field
            exc = f"input.baseline or input.evidence holds a number out of range ({exc})"
        raise BundleError(f"{jpath}: {exc}") from None
    threshold = _number(meta, "decision.threshold", jpath, -math.inf, math.inf)
    if not threshold > 0:
        raise BundleError(f"{jpath}: decision.threshold {threshold} is not positive")
    debounce = 1
    if meta.get("decision_debounce_steps") not in (None, 0):
        debounce = _integer(meta, "decision_debounce_steps", jpath, 1, MAX_DEBOUNCE)
    clear = 1
    if meta.get("decision_clear_steps") not in (None, 0):
        clear = _integer(meta, "decision_clear_steps", jpath, 1, MAX_DEBOUNCE)
    tnames, cents = _anomaly_types(meta, jpath, F)
    beyond = math.inf
    if isinstance(meta.get("anomaly_types"), dict) and "unknown_beyond" in meta["anomaly_types"]:
        beyond = _number(meta, "anomaly_types.unknown_beyond", jpath, 0.0, MAX_CENTROID * 100)
        if not beyond > 0:
            raise BundleError(f"{jpath}: anomaly_types.unknown_beyond {beyond} is not positive")
    suppression = None
    if meta.get("suppression") is not None:
        try:
            suppression = Suppression.from_dict(meta["suppression"], F)
        except ValueError as exc:
            raise BundleError(f"{jpath}: {exc}; re-export the bundle") from None
    for key in ("versions",):
        if key in meta and not isinstance(meta[key], dict):
            raise _wrong(jpath, key, meta[key], "an object")
    kind = meta.get("model_kind", "unknown")
    if not isinstance(kind, str):
        raise _wrong(jpath, "model_kind", kind, "a string")
    bundle = Bundle(
        path, meta, flat, kind, window, step, baseline, threshold, debounce, tnames, cents,
        digest, evidence, clear, beyond, suppression,
    )  # fmt: skip
    runtime = bundle.runtime()  # BundleError if the interpreter cannot load it
    try:
        runtime.check()
    except RuntimeLoadError as exc:
        raise BundleError(f"{mpath}: {exc}") from exc
    return bundle
