"""The model bundle (contract: docs/exporter.md, exporter/bundle.py): model.tflite + model.json with its sha256.

Conversion uses TFLite builtins only, so a graph that would need Flex (Select TF) ops fails
here, at export, instead of at the exporter. Before writing, the TFLite model must match
Keras within 1e-5 at batch 1 and after resizing to a larger batch.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coredns_anomaly import __version__

if TYPE_CHECKING:
    from .detector import AnomalyDetector

SCHEMA_VERSION = 2
MAX_ABS_DIFF = 1e-5
OUTPUTS = ("score", "embedding", "contributions")


class ExportError(RuntimeError):
    pass


def convert(serving) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(serving)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        flat = conv.convert()
    except Exception as exc:  # the converter's error names the op it could not lower
        raise ExportError(
            f"TFLite conversion with builtins only failed (a Flex op?): {exc}"
        ) from exc
    if b"Flex" in flat:
        raise ExportError("the converted model needs Flex (Select TF) ops; refusing the export")
    return flat


def litert_outputs(flat: bytes, X: np.ndarray) -> dict[str, np.ndarray]:
    """Run the flatbuffer in LiteRT (what the exporter runs), resizing to X's batch."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - tflite-runtime installs
        from tflite_runtime.interpreter import Interpreter
    it = Interpreter(model_content=flat)
    runner = it.get_signature_runner("serving_default")
    return {k: np.asarray(v) for k, v in runner(window=X.astype(np.float32)).items()}


def verify(flat: bytes, serving, X: np.ndarray) -> dict[str, float]:
    diffs = {}
    for name, batch in (("batch1", X[:1]), ("batch_resized", X[: max(2, min(len(X), 64))])):
        keras_out = serving.predict(batch, verbose=0)
        lite = litert_outputs(flat, batch)
        diffs[name] = max(
            float(np.max(np.abs(np.asarray(keras_out[k]) - lite[k]))) for k in OUTPUTS
        )
    worst = max(diffs.values())
    if worst > MAX_ABS_DIFF:
        raise ExportError(
            f"TFLite output differs from Keras by {worst:.2e} > {MAX_ABS_DIFF:.0e}: {diffs}"
        )
    return diffs


def export_bundle(
    det: AnomalyDetector, path: Path, extra: dict[str, Any], sample: np.ndarray | None = None
) -> Path:
    import keras
    import tensorflow as tf

    serving = det.serving_model()
    flat = convert(serving)
    if sample is None:
        rng = np.random.default_rng(0)
        sample = rng.normal(size=(64, det.window, len(det.feature_names))).astype(np.float32)
    diffs = verify(flat, serving, sample)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.tflite").write_bytes(flat)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "model_kind": det.kind,
        "feature_names": list(det.feature_names),
        "window": det.window,
        "step_seconds": det.step_seconds,
        "input": det.scaler.to_dict(),
        "inputs": {"window": [None, det.window, len(det.feature_names)]},
        "outputs": {
            "score": "raw anomaly score, higher is more anomalous",
            "embedding": "latent/embedding vector for anomaly type (nearest centroid)",
            "contributions": "per-feature contribution to the score (explanation)",
        },
        "decision": {
            "normalised_score": "score / threshold; >= 1 means anomalous",
            "threshold": det.threshold,
            "alternatives": det.thresholds,
            "rule": det.rule,
            "rules": det.threshold_rules,
            "ae_score": det.ae_score if det.kind == "autoencoder" else None,
        },
        "explanation": "reconstruction_error" if det.kind == "autoencoder" else "abs_zscore_last_step",
        "suppression": (lambda s: s.to_dict() if s else None)(det.suppression()),
        "anomaly_types": {"names": list(det.type_centroids), "centroids": list(det.type_centroids.values())}
        | ({} if det.type_radius is None else {"unknown_beyond": det.type_radius}),
        "hyperparameters": {"window": det.window, "filters": det.filters, "latent": det.latent, "learning_rate": det.learning_rate, "seed": det.seed},
        "train_info": det.train_info,
        "export_check": {"max_abs_diff": diffs, "bound": MAX_ABS_DIFF},
        "versions": {
            "project": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "sha256": hashlib.sha256(flat).hexdigest(),
    }  # fmt: skip
    for k, v in extra.items():
        meta.setdefault(k, v)
    (path / "model.json").write_text(
        json.dumps(meta, indent=1, sort_keys=True, default=json_default) + "\n"
    )
    return path


def json_default(o):
    """numpy scalars and arrays as plain JSON (model.json, results.json)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
