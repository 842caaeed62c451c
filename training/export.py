"""The model bundle (contract: contracts/bundle.py, docs/exporter.md): model.tflite + model.json.

Conversion uses TFLite builtins only, so a graph that would need Flex (Select TF) ops fails
here, at export, instead of at the exporter. Before writing, the TFLite model, run by the
exporter's own interpreter wrapper (exporter/runtime.py Runtime), must match Keras within 1e-5
at batch 1 and after resizing to a larger batch. model.json is written by the contract's one
writer (BundleMeta.write).
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from coredns_anomaly import __version__
from coredns_anomaly.contracts.bundle import AnomalyTypes, BundleMeta, json_default

from ..exporter.features import EVIDENCE
from ..exporter.runtime import OUTPUTS, Runtime

if TYPE_CHECKING:
    from .detector import AnomalyDetector

__all__ = ["ExportError", "convert", "export_bundle", "json_default", "litert_outputs", "verify"]

MAX_ABS_DIFF = 1e-5


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
    """Run the flatbuffer as the exporter runs it (exporter/runtime.py) on the windows X."""
    return Runtime(flat, X.shape[1], X.shape[2]).run(X)


def verify(flat: bytes, serving, X: np.ndarray) -> dict[str, float]:
    """Keras vs the exporter's Runtime at batch 1, then resized to a larger batch (one Runtime,
    as the exporter resizes its interpreter when the number of ready targets changes)."""
    runtime = Runtime(flat, X.shape[1], X.shape[2])
    diffs = {}
    for name, batch in (("batch1", X[:1]), ("batch_resized", X[: max(2, min(len(X), 64))])):
        keras_out = serving.predict(batch, verbose=0)
        lite = runtime.run(batch)
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
    det: AnomalyDetector,
    path: Path,
    *,
    debounce_steps: int,
    clear_steps: int,
    info: dict[str, Any] | None = None,
    sample: np.ndarray | None = None,
) -> Path:
    """Write the bundle at `path`. `debounce_steps` and `clear_steps` are the decision's (the
    detector's threshold was chosen with that debounce); `info` adds informational sections
    (evaluation, training_data, fit, ...), never a field the contract types."""
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
    suppression = det.suppression()
    meta = BundleMeta(
        model_kind=det.kind,
        feature_names=tuple(det.feature_names),
        window=det.window,
        step_seconds=det.step_seconds,
        sha256=hashlib.sha256(flat).hexdigest(),
        threshold=det.threshold,
        debounce_steps=debounce_steps,
        clear_steps=clear_steps,
        baseline=det.scaler.spec.to_dict(),
        evidence=EVIDENCE.to_dict(),  # featurize's FeatureState reads with it
        anomaly_types=AnomalyTypes(
            tuple(det.type_centroids),
            tuple(tuple(c) for c in det.type_centroids.values()),
            det.type_radius if det.type_radius is not None else float("inf"),
        ),
        suppression=suppression.to_dict() if suppression else None,
        decision={
            "normalised_score": "score / threshold; >= 1 means anomalous",
            "alternatives": det.thresholds,
            "rule": det.rule,
            "rules": det.threshold_rules,
            "ae_score": det.score_mode if det.kind == "autoencoder" else None,
        },
        versions={
            "project": __version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },  # fmt: skip
        info={
            "inputs": {"window": [None, det.window, len(det.feature_names)]},
            "outputs": {
                "score": "raw anomaly score, higher is more anomalous",
                "embedding": "latent/embedding vector for anomaly type (nearest centroid)",
                "contributions": "per-feature contribution to the score (explanation)",
            },
            "explanation": (
                "reconstruction_error" if det.kind == "autoencoder" else "abs_zscore_last_step"
            ),
            "hyperparameters": {
                "window": det.window,
                "filters": det.filters,
                "latent": det.latent,
                "learning_rate": det.learning_rate,
                "seed": det.seed,
            },  # fmt: skip
            "train_info": det.train_info,
            "export_check": {"max_abs_diff": diffs, "bound": MAX_ABS_DIFF},
        }
        | (info or {}),
    )
    meta.write(path / "model.json")
    return path
