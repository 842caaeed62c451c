"""The TFLite interpreter: ai-edge-litert (LiteRT) when installed, else tflite-runtime 2.14.

One batched invoke per step for every ready target. The interpreter is resized only when the
batch size changes (the number of ready targets is stable from step to step), and outputs are
read by the names of the bundle's `serving_default` signature, so output order never matters.
"""

from __future__ import annotations

import os

import numpy as np

OUTPUTS = ("score", "embedding", "contributions")
SIGNATURE = "serving_default"


class RuntimeLoadError(RuntimeError):
    pass


def interpreter_class() -> tuple[type, str]:
    """(Interpreter, name of the package that provides it); COREDNS_ANOMALY_RUNTIME forces one."""
    forced = os.environ.get("COREDNS_ANOMALY_RUNTIME", "")
    errors = []
    for pkg, mod in (("ai-edge-litert", "ai_edge_litert"), ("tflite-runtime", "tflite_runtime")):
        if forced and forced != pkg:
            continue
        try:
            module = __import__(f"{mod}.interpreter", fromlist=["Interpreter"])
            return module.Interpreter, pkg
        except ImportError as exc:
            errors.append(f"{pkg}: {exc}")
    raise RuntimeLoadError(
        "no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime==2.14.0 with "
        "numpy<2 on Python <= 3.11); " + "; ".join(errors)
    )


def runtime_name() -> str:
    from importlib.metadata import PackageNotFoundError, version

    _, pkg = interpreter_class()
    try:
        return f"{pkg} {version(pkg)}"
    except PackageNotFoundError:
        return pkg


_PROBED: set[str] = set()


def probe_in_child(flat: bytes, pkg: str) -> None:
    """Load the model in a child process first when the interpreter does not verify its input.

    tflite-runtime 2.14 does not verify flatbuffers: a corrupt model.tflite (say, truncated,
    with a model.json written to match) kills the process with SIGSEGV. A crash in a child
    becomes a refused bundle instead. LiteRT verifies the buffer, so it is loaded in-process.
    """
    if pkg != "tflite-runtime":
        return
    import hashlib
    import subprocess
    import sys
    import tempfile

    digest = hashlib.sha256(flat).hexdigest()
    if digest in _PROBED:
        return
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(flat)
        f.flush()
        code = (
            "import sys; from tflite_runtime.interpreter import Interpreter; "
            "Interpreter(model_path=sys.argv[1]).allocate_tensors()"
        )
        res = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True)
    if res.returncode != 0:
        if res.returncode < 0:
            raise RuntimeLoadError(
                f"not a loadable TFLite model: loading it crashed the interpreter "
                f"(signal {-res.returncode}); the file is corrupt or truncated"
            )
        last = (res.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise RuntimeLoadError(f"not a loadable TFLite model: {last[:300]}")
    _PROBED.add(digest)


class Runtime:
    """A loaded model: `run(Z)` maps (n, W, F) float32 windows to the signature's outputs."""

    def __init__(self, flat: bytes, window: int, n_features: int, num_threads: int = 1) -> None:
        Interpreter, pkg = interpreter_class()
        probe_in_child(flat, pkg)
        try:
            self.it = Interpreter(model_content=flat, num_threads=num_threads)
            sig = self.it.get_signature_runner(SIGNATURE)
        except (ValueError, RuntimeError) as exc:
            raise RuntimeLoadError(
                f"not a loadable TFLite model with a `{SIGNATURE}` signature: {exc}"
            ) from exc
        ins, outs = sig.get_input_details(), sig.get_output_details()
        if list(ins) != ["window"] or "score" not in outs:
            raise RuntimeLoadError(
                f"signature `{SIGNATURE}` has inputs {list(ins)} and outputs {list(outs)}; "
                "need input `window` and outputs score (embedding, contributions)"
            )
        shape = list(ins["window"]["shape_signature"])
        if shape[1:] != [window, n_features]:
            raise RuntimeLoadError(
                f"model input is {shape}, but model.json says window {window} x {n_features} features"
            )
        self.window, self.n_features = window, n_features
        self.input_index = ins["window"]["index"]
        self.output_index = {k: v["index"] for k, v in outs.items()}
        self.batch = 0

    def run(self, Z: np.ndarray) -> dict[str, np.ndarray]:
        n = len(Z)
        if n == 0:
            return {k: np.zeros((0,)) for k in self.output_index}
        if n != self.batch:
            self.it.resize_tensor_input(
                self.input_index, [n, self.window, self.n_features], strict=True
            )
            self.it.allocate_tensors()
            self.batch = n
        self.it.set_tensor(self.input_index, np.ascontiguousarray(Z, dtype=np.float32))
        self.it.invoke()
        # get_tensor returns a copy (both runtimes), safe past the next invoke.
        return {k: self.it.get_tensor(i) for k, i in self.output_index.items()}

    def check(self) -> None:
        """One invoke on a neutral window: a model that cannot run is refused at load."""
        try:
            out = self.run(np.zeros((1, self.window, self.n_features), np.float32))
        except (ValueError, RuntimeError) as exc:
            raise RuntimeLoadError(f"the model does not run: {exc}") from exc
        if out["score"].shape[0] != 1 or not np.isfinite(out["score"]).all():
            raise RuntimeLoadError(f"the model's score on a neutral window is {out['score']!r}")
