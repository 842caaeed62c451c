"""`coredns-anomaly restep`: a bundle for another scrape step, with the same network.

The network never sees raw rates: it sees each instance's z-scores against its own baseline
(exporter/baseline.py), and the features are per second, shares and quantiles, so a window of W
steps means the same thing at 15 s as at 2 s, only longer. What must change with the step is
how the baseline and the decision count steps:

- the baseline spec: `BaselineSpec.for_step` (location >= 8 steps, warm-up >= 20 steps);
- the debounce: at least `CONFIRM_SECONDS` and no shorter than the source bundle's, in steps;
- the calm steps that end an anomaly: `clear_steps(step)` (30 s).

The threshold stays. How well that carries over is measured, not assumed: bench/transfer.py
scores the result on recordings at that step none of the training data came from
(docs/results.md, "Any scrape step"). With your own history, `coredns-anomaly fit` trains at
your step instead.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

from ..contracts.bundle import clear_steps
from ..exporter.baseline import BaselineSpec
from ..exporter.bundle import load_bundle

# An alarm at a slow step needs at least this long above the threshold: 3 steps at 15 s, 2 at
# 30 s. With 30 s (2 steps at 15 s, 1 at 30 s) single blips just over the threshold alarmed: 13
# times in 7.3 healthy instance-hours at 15 s on env-step15 and env-soak, 2 with 45 s, at the
# same recall and a median delay of 2 steps (bench/transfer.py; env-soak2 was recorded after
# this choice and holds it out).
CONFIRM_SECONDS = 45.0


def restep(src: Path, step: float, out: Path) -> Path:
    """Write `out`: `src`'s network (model.tflite, keras/) with step, baseline and decision
    counted for `step` seconds. The result is loaded (and test-invoked) before returning."""
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step {step} must be a positive number of seconds")
    src_bundle = load_bundle(src)  # refuse a bad source before writing anything
    meta = src_bundle.meta
    spec = BaselineSpec.for_step(step, src_bundle.n_features)
    baseline = dict(meta.baseline)
    baseline.update(warmup_seconds=spec.warmup_seconds, location_seconds=spec.location_seconds)
    debounce_s = max(CONFIRM_SECONDS, meta.debounce_steps * meta.step_seconds)
    meta = dataclasses.replace(
        meta,
        step_seconds=float(step),
        baseline=baseline,
        debounce_steps=max(1, math.ceil(debounce_s / step - 1e-9)),
        clear_steps=clear_steps(step),
        info=meta.info
        | {
            "restepped_from": {
                "sha256": meta.sha256,
                "step_seconds": meta.step_seconds,
                "decision_debounce_steps": meta.debounce_steps,
            }
        },
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    meta.write(tmp / "model.json")
    load_bundle(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
