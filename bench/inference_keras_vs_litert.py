"""Keras `predict` vs LiteRT `invoke` on the same windows, for one window and for a batch.

    .venv/bin/python bench/inference_keras_vs_litert.py [--bundle models/default] [--dataset data/lab-v1]

Both run the shipped model's serving graph on real windows of the dataset, in one process,
one after the other; figures are medians of repeated runs (wall clock, 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def timeit(fn, repeat: int) -> float:
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--dataset", type=Path, default=Path("data/lab-v1"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("bench/results/inference.json"))
    args = ap.parse_args()

    from ai_edge_litert.interpreter import Interpreter

    from coredns_anomaly.training.ensemble import load_detector

    det = load_detector(args.bundle / "keras")
    X = det.windows(args.dataset).X
    X = X[np.random.default_rng(0).permutation(len(X))[: args.batch]]
    serving = det.serving_model()
    interp = Interpreter(model_path=str(args.bundle / "model.tflite"), num_threads=1)
    inp = interp.get_input_details()[0]["index"]

    def lite(batch: np.ndarray):
        interp.resize_tensor_input(inp, list(batch.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp, batch)
        interp.invoke()

    def lite_invoke_only(batch: np.ndarray):
        interp.set_tensor(inp, batch)
        interp.invoke()

    res = {
        "model_kind": det.kind,
        "window": det.window,
        "features": len(det.feature_names),
        "batch": len(X),
    }
    for name, batch in (("one_window", X[:1]), ("batch", X)):
        keras_s = timeit(lambda b=batch: serving.predict(b, verbose=0), max(5, args.repeat // 5))
        keras_call_s = timeit(lambda b=batch: serving(b, training=False), args.repeat)
        lite(batch)
        lite_s = timeit(lambda b=batch: lite_invoke_only(b), args.repeat)
        res[name] = {
            "keras_predict_ms": keras_s * 1e3,
            "keras_call_ms": keras_call_s * 1e3,
            "litert_invoke_ms": lite_s * 1e3,
            "predict_over_invoke": keras_s / lite_s,
            "litert_us_per_window": lite_s * 1e6 / len(batch),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
