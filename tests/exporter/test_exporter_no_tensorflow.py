"""The exporter runs on LiteRT alone: a fresh interpreter that imports the exporter's service
and CLI, builds an Exporter and runs steps never imports TensorFlow or Keras."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from exporter_testlib import MODEL_DIR, PAGES_DIR, ROOT

CHILD = textwrap.dedent(
    """
    import gzip, json, sys, time
    from pathlib import Path
    import coredns_anomaly.cli as top
    from coredns_anomaly.exporter import cli, service
    from coredns_anomaly.exporter.engine import Observation
    top.build_parser()  # every role's subcommands registered, as `coredns-anomaly` does
    x = service.Exporter(service.Settings(model=sys.argv[1], targets=["127.0.0.1:1"], scrape_timeout=0.2))
    pages = [gzip.decompress(p.read_bytes()).decode() for p in sorted(Path(sys.argv[2]).glob("coredns-normal-*.prom.gz"))]
    for k in range(3):
        x.run_step()  # scrapes (a closed port), features, inference
    window = x.engine.bundle.window
    for k, text in enumerate((pages * window)[: window + 1]):  # real pages into the engine: a score
        x.engine.step([Observation("real:9153", 1000.0 + 2 * k, text=text)])
    x.close()
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras") or m.startswith(("tensorflow", "keras")))
    print(json.dumps({"bad": bad, "steps": x.steps, "scored": x.engine.states["real:9153"].verdict is not None}))
    """
)


def test_no_tensorflow_or_keras_is_imported():
    r = subprocess.run(
        [sys.executable, "-c", CHILD, str(MODEL_DIR), str(PAGES_DIR)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["steps"] == 3 and out["scored"], out
    assert out["bad"] == [], f"the exporter imported {out['bad']}"
