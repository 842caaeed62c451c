"""A recording replayed through the exporter's own Engine, scrape by scrape: what a deployed
exporter with this bundle would have said about every instance (features, per-instance
baselines, LiteRT, debounce). The one replay behind the transfer benchmark, the feedback loop's
test and benchmark, and anything else that asks "would this bundle have alarmed here?".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..exporter.bundle import load_bundle
from ..exporter.engine import Engine, Observation
from . import dataset as ds_mod
from .featurize import instance_pages


def replay(
    ds: ds_mod.Dataset, model: Path, instances: list[str] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per instance: times, score, anomaly (the decision), learning; the fleet stepped together,
    exactly as it was scraped (a down scrape is a down observation). `instances` replays only
    those: each instance's verdicts depend on its own history alone (per-instance baselines)."""
    engine = Engine(load_bundle(model), explain_top=0)
    pages = {inst: list(instance_pages(ds, inst)) for inst in instances or ds.instances}
    n = max(len(p) for p in pages.values())
    out = {i: {"times": [], "score": [], "anomaly": [], "learning": []} for i in pages}
    for k in range(n):
        obs = []
        for inst, pp in pages.items():
            if k < len(pp):
                ts, page = pp[k]
                obs.append(
                    Observation(inst, ts, page=page)
                    if page is not None
                    else Observation(inst, ts, reason="down")
                )
        engine.step(obs)
        for ob in obs:
            st = engine.states[ob.instance]
            v = st.verdict
            o = out[ob.instance]
            o["times"].append(ob.ts)
            o["score"].append(np.nan if v is None else v.score)
            o["anomaly"].append(bool(v and v.anomaly))
            o["learning"].append(st.learning)
    return {i: {k: np.asarray(v) for k, v in d.items()} for i, d in out.items()}


def alarmed_during(
    replayed: dict[str, np.ndarray], spans: list[tuple[float, float]], after: float = 10.0
) -> list[bool]:
    """Per (start, end) span: did the instance alarm in it, or within `after` s of its end?"""
    t, a = replayed["times"], replayed["anomaly"]
    return [bool(a[(t >= s) & (t <= e + after)].any()) for s, e in spans]
