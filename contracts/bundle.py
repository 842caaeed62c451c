"""model.json, the card of a model bundle: one typed, versioned object, one writer, one reader.

A bundle is a directory with model.tflite and model.json. Training writes model.json
(`BundleMeta.write`, from training/export.py and training/restep.py); the exporter and the
rules generator read it (`BundleMeta.read`); nothing else opens it. The reader applies one rule
per field, the same for every role, and refuses anything else with a BundleError that names
the field and the fix. The writer reads back what it is about to write through that reader, so
no bundle that a reader would refuse is ever written.

Three sections are parsed by the module that owns their rule, which training and the exporter
both import: `input.baseline` (exporter/baseline.py BaselineSpec), `input.evidence`
(exporter/features.py Evidence) and `suppression` (exporter/suppress.py Suppression). Here
they are JSON objects, checked to be objects.

Versions (`schema_version`):
- 2, written and read: every instance scaled against its own baseline (`input.baseline`).
  Fields added to version 2 later read, in a bundle that predates them, as that bundle was
  always served: `decision_clear_steps` 1 (also for null or 0), no
  `anomaly_types.unknown_beyond` (no window is typed unknown), no `suppression`.
  `decision_debounce_steps` is required: the exporter once served a bundle without it at 1
  while the rules generator refused it; such a bundle (only `AnomalyDetector.export` without a
  debounce wrote one) is now refused by both, naming the fix.
- 1: one lab-fitted scaler for every CoreDNS; refused, naming the fix (retrain).

Stdlib only: the rules generator reads bundles where neither numpy's model code nor a TFLite
interpreter is needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ContractError

SCHEMA_VERSION = 2  # what the writer writes
SCHEMA_VERSIONS = (2,)  # what the reader reads
NORMALIZATION = "instance_baseline"
MAX_META_BYTES = 4 * 1024 * 1024  # model.json is ~10 KB; a huge one is not ours
MAX_META_DEPTH = 32  # model.json nests ~5 deep; deeper JSON would blow the stack when compared
MAX_WINDOW = 100_000
MAX_DEBOUNCE = 100_000
MAX_STEP_SECONDS = 86_400.0
MIN_STEP_SECONDS = 1e-3
MAX_CENTROID = 1e6
# An anomaly lasts until this long of calm (score < 1): a state that hovers around the
# threshold (a cache still evicting a flood's junk names minutes after it) is one alarm.
CLEAR_SECONDS = 30.0


def clear_steps(step_seconds: float) -> int:
    """`decision_clear_steps` for a bundle of this step: CLEAR_SECONDS of calm, at least 1."""
    return max(1, math.ceil(CLEAR_SECONDS / step_seconds - 1e-9))


class BundleError(ContractError):
    """A bundle no role may use; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class AnomalyTypes:
    """`anomaly_types`: the classes the exporter names, by nearest centroid of the type profile."""

    names: tuple[str, ...] = ()
    centroids: tuple[tuple[float, ...], ...] = ()  # (types, features): mean z-scores
    # A window farther than this from every centroid is typed unknown; inf (not written):
    # never, as bundles from before the radius existed.
    unknown_beyond: float = math.inf

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "names": list(self.names),
            "centroids": [list(row) for row in self.centroids],
        }
        if math.isfinite(self.unknown_beyond):
            doc["unknown_beyond"] = self.unknown_beyond
        return doc


# The fields BundleMeta types; any other top-level field is carried in `info` as written.
TYPED_FIELDS = frozenset(
    {
        "schema_version", "model_kind", "feature_names", "window", "step_seconds", "sha256",
        "input", "decision", "decision_debounce_steps", "decision_clear_steps", "anomaly_types",
        "suppression", "versions",
    }
)  # fmt: skip


@dataclass(frozen=True)
class BundleMeta:
    """model.json, field by field (the JSON name where it differs is in the comment)."""

    model_kind: str  # autoencoder, classifier, siamese, ensemble
    feature_names: tuple[str, ...]  # the model's input features, in input order
    window: int  # steps per window
    step_seconds: float  # the scrape step the bundle counts in
    sha256: str  # of model.tflite
    threshold: float  # decision.threshold: the exporter publishes raw score / threshold
    debounce_steps: int  # decision_debounce_steps: steps >= 1 before an anomaly starts
    baseline: dict[str, Any]  # input.baseline (BaselineSpec)
    evidence: dict[str, Any]  # input.evidence (Evidence)
    anomaly_types: AnomalyTypes = AnomalyTypes()
    clear_steps: int = 1  # decision_clear_steps: calm steps (< 1) that end an anomaly
    suppression: dict[str, Any] | None = None  # judged false alarms (Suppression); None: none
    # The rest of `decision`: the rule that chose the threshold, the alternatives, ae_score.
    decision: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] | None = None  # project, tensorflow, keras, python
    # Every other field, as written: evaluation, train_info, training_data, fit, restepped_from,
    # hyperparameters, export_check, ... Roles read them with `info_field`.
    info: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        typed = sorted(TYPED_FIELDS & set(self.info))
        if typed:  # a typed field must be set as such, never slipped in beside it
            raise ValueError(f"BundleMeta.info may not hold the typed fields {typed}")

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def project_version(self) -> str:
        """The project version that exported the bundle ("unknown" if it did not say)."""
        return str((self.versions or {}).get("project", "unknown"))

    def info_field(self, dotted: str, where: str | Path = "model.json") -> Any:
        """A dotted field of `info` (e.g. evaluation.test.median_delay_steps); BundleError
        naming it when it is missing."""
        return field_of(self.info, dotted, where)

    # --- the one writer ---------------------------------------------------------------------

    def to_document(self) -> dict[str, Any]:
        doc = dict(self.info)
        doc.update(
            schema_version=self.schema_version,
            model_kind=self.model_kind,
            feature_names=list(self.feature_names),
            window=self.window,
            step_seconds=self.step_seconds,
            sha256=self.sha256,
            input={
                "normalization": NORMALIZATION,
                "baseline": self.baseline,
                "evidence": self.evidence,
            },
            decision={**self.decision, "threshold": self.threshold},
            decision_debounce_steps=self.debounce_steps,
            decision_clear_steps=self.clear_steps,
            anomaly_types=self.anomaly_types.to_document(),
        )
        if self.suppression is not None:
            doc["suppression"] = self.suppression
        if self.versions is not None:
            doc["versions"] = self.versions
        return doc

    def write(self, jpath: Path) -> BundleMeta:
        """Write model.json at `jpath`; returns what a reader will read from it.

        numpy scalars and arrays anywhere are written as plain JSON numbers and lists. What is
        written is read back through the reader first: a field the reader would refuse fails
        here, at export, with the reader's message, and nothing is written.
        """
        text = json.dumps(self.to_document(), indent=1, sort_keys=True, default=json_default)
        meta = BundleMeta.from_document(json.loads(text), jpath)
        Path(jpath).write_text(text + "\n", encoding="utf-8")
        return meta

    # --- the one reader ---------------------------------------------------------------------

    @classmethod
    def read(cls, jpath: Path, features: tuple[str, ...] | None = None) -> BundleMeta:
        """model.json at `jpath`, checked field by field; BundleError says what is wrong.

        `features`: the feature names the reader computes, in its input order (the exporter's);
        a bundle of other features is refused, naming the difference.
        """
        return cls.from_document(read_document(Path(jpath)), jpath, features)

    @classmethod
    def from_document(
        cls, doc: Any, where: str | Path = "model.json", features: tuple[str, ...] | None = None
    ) -> BundleMeta:
        if not isinstance(doc, dict):
            raise BundleError(f"{where} must hold a JSON object")
        schema = doc.get("schema_version")
        if schema == 1 and not isinstance(schema, bool):
            raise BundleError(
                f"{where}: schema_version 1 scales every CoreDNS with one lab-fitted scaler, "
                "which reads any cluster unlike the lab as anomalous; use models/default of "
                "this release, or retrain with `coredns-anomaly train` / `coredns-anomaly fit`"
            )
        if isinstance(schema, bool) or not isinstance(schema, int) or schema not in SCHEMA_VERSIONS:
            raise BundleError(
                f"{where}: schema_version {schema!r:.40} is not one this release reads "
                f"({', '.join(map(str, SCHEMA_VERSIONS))}); upgrade it or re-export the bundle"
            )
        sha = field_of(doc, "sha256", where)
        if not isinstance(sha, str):
            raise _wrong(where, "sha256", sha, "the hex sha256 of model.tflite")
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise BundleError(
                f"{where}: sha256 is not a 64-digit hex digest ({sha[:70]!r}); re-export the bundle"
            )
        names = field_of(doc, "feature_names", where)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _wrong(where, "feature_names", names, "a list of feature names")
        if not names:
            raise BundleError(f"{where}: feature_names is empty; re-export the bundle")
        if features is not None and tuple(names) != tuple(features):
            missing = [n for n in features if n not in names]
            extra = [n for n in names if n not in features]
            detail = (
                f"missing {missing}, unknown {extra}"
                if missing or extra
                else "same names, other order"
            )
            raise BundleError(
                f"{where}: the model's features differ from this exporter's ({detail}); "
                "use an exporter of the version that trained it, or retrain"
            )
        window = _integer(doc, "window", where, 1, MAX_WINDOW)
        step = _positive(doc, "step_seconds", where, MIN_STEP_SECONDS, MAX_STEP_SECONDS)
        norm = field_of(doc, "input.normalization", where)
        if norm != NORMALIZATION:
            raise BundleError(
                f"{where}: input.normalization {str(norm)[:40]!r} is not {NORMALIZATION!r}; "
                "re-export the bundle"
            )
        baseline = _object(doc, "input.baseline", where)
        evidence = _object(doc, "input.evidence", where)
        threshold = _positive(doc, "decision.threshold", where, 0.0, math.inf)
        if "decision_debounce_steps" not in doc:
            raise BundleError(
                f"{where} lacks `decision_debounce_steps` (steps at or above the threshold "
                "before an anomaly starts): re-export the bundle with `coredns-anomaly train` "
                'or `fit`, or add "decision_debounce_steps": 1, the value it was served with '
                "before this field was required"
            )
        debounce = _integer(doc, "decision_debounce_steps", where, 1, MAX_DEBOUNCE)
        clear = 1
        if doc.get("decision_clear_steps") not in (None, 0):
            clear = _integer(doc, "decision_clear_steps", where, 1, MAX_DEBOUNCE)
        types = _anomaly_types(doc, where, len(names))
        suppression = None
        if doc.get("suppression") is not None:
            suppression = _object(doc, "suppression", where)
        versions = None
        if "versions" in doc:
            versions = _object(doc, "versions", where)
        kind = field_of(doc, "model_kind", where)
        if not isinstance(kind, str):
            raise _wrong(where, "model_kind", kind, "a string")
        return cls(
            model_kind=kind,
            feature_names=tuple(names),
            window=window,
            step_seconds=step,
            sha256=sha,
            threshold=threshold,
            debounce_steps=debounce,
            baseline=baseline,
            evidence=evidence,
            anomaly_types=types,
            clear_steps=clear,
            suppression=suppression,
            decision={k: v for k, v in doc["decision"].items() if k != "threshold"},
            versions=versions,
            info={k: v for k, v in doc.items() if k not in TYPED_FIELDS},
            schema_version=schema,
        )


def json_default(o: Any) -> Any:
    """numpy scalars and arrays as plain JSON (model.json, results.json), without numpy."""
    if hasattr(o, "tolist") and callable(o.tolist):  # numpy arrays and scalars
        return o.tolist()
    return str(o)


def read_document(jpath: Path) -> dict[str, Any]:
    """model.json as a dict, before any field is read.

    Refused with BundleError: unreadable, not UTF-8, not JSON, larger than MAX_META_BYTES,
    nested deeper than MAX_META_DEPTH (a deeper document would exhaust the stack wherever it
    is walked or compared later), integers of more digits than Python converts, not an object.
    """
    try:
        size = jpath.stat().st_size
        if size > MAX_META_BYTES:
            raise BundleError(f"{jpath} is {size} bytes, over {MAX_META_BYTES}: not a model.json")
        doc = json.loads(jpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{jpath} is not valid JSON: {short(exc)}") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{jpath} must hold a JSON object")
    if _depth(doc) > MAX_META_DEPTH:
        raise BundleError(f"{jpath} nests deeper than {MAX_META_DEPTH} levels: not a model.json")
    return doc


def field_of(doc: Mapping, dotted: str, where: str | Path = "model.json") -> Any:
    """A dotted field of a JSON document; a missing one names itself and the fix."""
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise BundleError(
                f"{where} lacks `{dotted}`: re-export the bundle with `coredns-anomaly train`"
            )
        cur = cur[part]
    return cur


def short(exc: BaseException) -> str:
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


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _wrong(where: str | Path, dotted: str, value: Any, want: str) -> BundleError:
    return BundleError(
        f"{where}: `{dotted}` is {_shown(value)}, must be {want}; re-export the bundle"
    )


def _wrong_type(where: str | Path, dotted: str, value: Any, want: str) -> BundleError:
    return BundleError(
        f"{where}: a field has the wrong type: `{dotted}` is {_shown(value)}, must be {want}; "
        "re-export the bundle"
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _float(v: int | float) -> float:
    try:
        return float(v)
    except OverflowError:  # an integer of 400 digits
        return math.inf


def _number(doc: Mapping, dotted: str, where: str | Path, lo: float, hi: float) -> float:
    """A finite JSON number in [lo, hi] (not a bool, not a string)."""
    v = field_of(doc, dotted, where)
    if not _is_number(v):
        raise _wrong_type(where, dotted, v, "a number")
    f = _float(v)
    if not (math.isfinite(f) and lo <= f <= hi):
        raise _wrong(where, dotted, v, f"a finite number in [{lo:g}, {hi:g}]")
    return f


def _positive(doc: Mapping, dotted: str, where: str | Path, lo: float, hi: float) -> float:
    """A finite JSON number > 0, in [lo, hi]."""
    f = _number(doc, dotted, where, -math.inf, math.inf)
    if not f > 0:
        raise BundleError(f"{where}: {dotted} {f} is not positive; re-export the bundle")
    if not lo <= f <= hi:
        raise BundleError(f"{where}: {dotted} {f} is not in [{lo:g}, {hi:g}]; re-export the bundle")
    return f


def _integer(doc: Mapping, dotted: str, where: str | Path, lo: int, hi: int) -> int:
    """A JSON integer in [lo, hi] (an integral float such as 8.0 is accepted)."""
    f = _number(doc, dotted, where, lo, hi)
    if f != int(f):
        raise _wrong(where, dotted, field_of(doc, dotted, where), "an integer")
    return int(f)


def _object(doc: Mapping, dotted: str, where: str | Path) -> dict[str, Any]:
    v = field_of(doc, dotted, where)
    if not isinstance(v, dict):
        raise _wrong(where, dotted, v, "an object")
    return v


def _anomaly_types(doc: Mapping, where: str | Path, n_features: int) -> AnomalyTypes:
    """`anomaly_types`: names, centroids (types x features numbers), optional unknown_beyond."""
    types = doc.get("anomaly_types")
    if types is not None and not isinstance(types, dict):
        raise _wrong(where, "anomaly_types", types, "an object with names and centroids")
    names = field_of(doc, "anomaly_types.names", where)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _wrong(where, "anomaly_types.names", names, "a list of strings")
    cents = types.get("centroids", [])
    shape_ok = isinstance(cents, list) and len(cents) == len(names)
    rows_ok = shape_ok and all(
        isinstance(row, list) and len(row) == n_features and all(_is_number(x) for x in row)
        for row in cents
    )
    if not rows_ok:
        shape = f"{len(cents)} rows" if isinstance(cents, list) else f"a {type(cents).__name__}"
        raise BundleError(
            f"{where}: anomaly_types.centroids has shape ({shape}), need ({len(names)}, "
            f"{n_features}) numbers; re-export the bundle"
        )
    rows = tuple(tuple(_float(x) for x in row) for row in cents)
    if not all(math.isfinite(x) and abs(x) <= MAX_CENTROID for row in rows for x in row):
        # centroids are mean z-scores, clipped at input.baseline.clip when they were fitted
        raise BundleError(
            f"{where}: anomaly_types.centroids holds a number that is not a z-score "
            f"(non-finite or beyond +-{MAX_CENTROID:g})"
        )
    beyond = math.inf
    if "unknown_beyond" in types:
        beyond = _number(doc, "anomaly_types.unknown_beyond", where, 0.0, MAX_CENTROID * 100)
        if not beyond > 0:
            raise BundleError(f"{where}: anomaly_types.unknown_beyond {beyond} is not positive")
    return AnomalyTypes(tuple(names), rows, beyond)
