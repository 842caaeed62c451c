"""The shipped model runs on each TFLite interpreter the exporter supports. CI runs this file in
.venv (ai-edge-litert) and in .venv-tflite (`make venv-tflite`: tflite-runtime 2.14, numpy<2);
each venv skips the interpreter it does not have. Fresh installs of both:
test_deploy_install_runtime.py."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from deploy_testlib import ROOT

MODEL = ROOT / "models" / "default"


@pytest.mark.parametrize("module", ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"])
def test_interpreter_runs_the_default_model(module):
    try:
        interpreter = importlib.import_module(module)
    except ImportError:
        pytest.skip(f"{module} not installed in this venv (see the module docstring)")
    card = json.loads((MODEL / "model.json").read_text())
    window, features = card["window"], len(card["feature_names"])
    it = interpreter.Interpreter(model_path=str(MODEL / "model.tflite"))
    runner = it.get_signature_runner("serving_default")
    out = runner(window=np.zeros((3, window, features), np.float32))
    assert out["score"].shape == (3,)
    assert out["contributions"].shape == (3, features)
    assert np.isfinite(out["score"]).all()
