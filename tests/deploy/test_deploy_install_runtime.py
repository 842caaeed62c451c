"""scripts/install-runtime.sh (every install step of the Dockerfile) into a fresh venv, from the
same sources the Dockerfile's build stage copies: no TensorFlow, and both roles work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_testlib import ROOT, parse_dockerfile

pytestmark = pytest.mark.integration

HEAVY = ("tensorflow", "tensorflow-cpu", "tf-keras", "keras", "tensorboard", "tf-nightly")

# Run inside the new venv; prints what the test asserts on.
PROBE = r"""
import importlib, importlib.metadata as md, importlib.util, json, sys
from pathlib import Path
import numpy as np
module, model = sys.argv[1], Path(sys.argv[2])
card = json.loads((model / "model.json").read_text())
it = importlib.import_module(module).Interpreter(model_path=str(model / "model.tflite"))
out = it.get_signature_runner("serving_default")(
    window=np.zeros((2, card["window"], len(card["feature_names"])), np.float32))
import coredns_anomaly.exporter.features, coredns_anomaly.webhook.app, flask, gunicorn  # noqa
import coredns_anomaly.webhook as wh
print(json.dumps({
    "dists": sorted(d.metadata["Name"].lower().replace("_", "-") for d in md.distributions()),
    "tensorflow_importable": importlib.util.find_spec("tensorflow") is not None,
    "heavy_loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")),
    "score_shape": list(out["score"].shape),
    "numpy": np.__version__,
    "package": wh.__file__,
    "templates": sorted(p.name for p in (Path(wh.__file__).parent / "templates").glob("*")),
}))
"""


def build_context(dest: Path) -> Path:
    """Copy what the Dockerfile's build stage COPYs, so a missing COPY fails here too."""
    _, stages = parse_dockerfile((ROOT / "Dockerfile").read_text())
    for c in stages["build"].all("COPY"):
        *sources, target = c.split()
        for src in sources:
            to = dest / (src if target in ("./", "scripts/") or target.endswith("/") else target)
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, to, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / src, to)
    return dest


@pytest.mark.parametrize(
    "variant,module",
    [("", "ai_edge_litert.interpreter"), ("--tflite-runtime", "tflite_runtime.interpreter")],
    ids=["ai-edge-litert", "tflite-runtime"],
)
def test_runtime_install_has_no_tensorflow_and_both_roles_work(tmp_path, variant, module):
    if variant and sys.version_info[:2] > (3, 11):
        pytest.skip("tflite-runtime 2.14 has no wheels past Python 3.11")
    src = build_context(tmp_path / "src")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHON"] = getattr(sys, "_base_executable", sys.executable)  # the venv's base python
    cmd = ["bash", str(src / "scripts/install-runtime.sh"), "--venv", str(venv), str(src)]
    if variant:
        cmd.insert(2, variant)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]

    # Outside the work tree, so nothing imports from it by accident.
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    probe = run(str(venv / "bin/python"), "-c", PROBE, module, str(ROOT / "models/default"))
    assert probe.returncode == 0, probe.stderr[-4000:]
    facts = json.loads(probe.stdout)
    assert not [d for d in facts["dists"] if d in HEAVY or d.startswith("tensorflow")], facts[
        "dists"
    ]
    assert not facts["tensorflow_importable"] and not facts["heavy_loaded"]
    assert facts["score_shape"] == [2]
    assert Path(facts["package"]).is_relative_to(venv), "not the installed package"
    assert any(t.endswith(".html") for t in facts["templates"]), "webhook templates not packaged"
    if variant:
        assert facts["numpy"].startswith("1.") and "ai-edge-litert" not in facts["dists"]
    else:
        assert "tflite-runtime" not in facts["dists"]

    cli = str(venv / "bin/coredns-anomaly")
    helped = run(cli, "--help")
    assert helped.returncode == 0 and "webhook" in helped.stdout, helped.stderr
    check = run(
        cli,
        "webhook",
        "serve",
        "--check",
        "--allow-unauthenticated",
        "--db",
        str(tmp_path / "w.db"),
    )
    assert check.returncode == 0 and check.stdout.startswith("ok:"), check.stderr

    # Idempotent: the stamp makes a rerun a no-op.
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "up to date" in again.stderr
