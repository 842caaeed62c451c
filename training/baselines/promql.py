"""Classic Prometheus alerting rules over a recorded dataset, evaluated by the real Prometheus.

Why the real thing: a baseline is only fair if it is the rules as operators run them, so PromQL
(rate windows, histogram_quantile, absent, vector matching, lookback) is never imitated here.
The dataset is exported as OpenMetrics (job="coredns"), backfilled with
`promtool tsdb create-blocks-from openmetrics`, and a throw-away Prometheus on loopback answers
`/api/v1/query_range` for every alerting rule's `expr`, at the dataset step over the dataset's
range. Recording rules in the file are backfilled first with
`promtool tsdb create-blocks-from rules`, so alerts that read them see real recorded series.

The one part done in Python is the alert state machine (`for:` and `keep_firing_for:`), because
Prometheus only runs it in real time: `apply_for` mirrors rules/alerting.go of Prometheus 2.42.

Per instance by default: each dataset instance gets its own TSDB and Prometheus, as if every
CoreDNS were its own job, so fleet-wide aggregations (`sum(...)`, `sum without (instance)`) in
the mixin see only that instance. A fleet of one is what a per-instance model sees too;
evaluating the whole fleet at once would let a healthy majority dilute one sick instance.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from coredns_anomaly.exporter.promclient import PrometheusAPI, PrometheusAPIError
from coredns_anomaly.lab import prometheus

from ..dataset import Dataset
from ..openmetrics import write_openmetrics

JOB = "coredns"
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_UNIT["y"] = 365 * _UNIT["d"]


def parse_duration(text: Any) -> float:
    """Prometheus duration ("1h30m", "10m", "500ms", "0") -> seconds; None -> 0."""
    if text is None or text == 0 or text == "0":
        return 0.0
    s, pos, total = str(text).strip(), 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(s):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return total


def rule_alerts(rules_file: str | Path) -> list[dict[str, Any]]:
    """The alerting rules of a rule file, in file order.

    Each: name, expr, for (seconds), keep_firing_for (seconds), labels, group.
    Recording rules are skipped (evaluate_alert_rules backfills them separately).
    """
    doc = yaml.safe_load(Path(rules_file).read_text()) or {}
    out = []
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue
            out.append(
                {
                    "name": str(rule["alert"]),
                    "expr": str(rule["expr"]).strip(),
                    "for": parse_duration(rule.get("for")),
                    "keep_firing_for": parse_duration(rule.get("keep_firing_for")),
                    "labels": {str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                    "group": str(group.get("name", "")),
                }
            )
    return out


def backfill(ds: Dataset, workdir: Path) -> Path:
    """The dataset as a TSDB in `workdir`/tsdb (OpenMetrics under job="coredns", backfilled with
    promtool), ready for `prometheus.serving`; returns its path."""
    om = workdir / "data.om"
    write_openmetrics(ds, om, job=JOB)
    prometheus.backfill_openmetrics(om, workdir / "tsdb")
    om.unlink()
    return workdir / "tsdb"


def _has_recording_rules(rules_file: Path) -> bool:
    doc = yaml.safe_load(rules_file.read_text()) or {}
    return any("record" in r for g in doc.get("groups") or [] for r in g.get("rules") or [])


def apply_for(
    present: np.ndarray, times: np.ndarray, for_seconds: float, keep_firing_for: float = 0.0
) -> np.ndarray:
    """Firing state of one alert series at each evaluation, as Prometheus computes it.

    `present[k]`: the rule's expr returned this series at evaluation time `times[k]`.
    A series becomes pending when it appears (ActiveAt) and fires once `t - ActiveAt >= for`;
    one evaluation without it resets it (a pending alert is dropped, a firing one resolves),
    unless it was firing and `keep_firing_for` has not yet run out since it vanished.
    """
    firing = np.zeros(len(present), dtype=bool)
    active_at: float | None = None
    is_firing = False
    keep_since: float | None = None
    pairs = zip(np.asarray(present).tolist(), np.asarray(times).tolist(), strict=True)
    for k, (p, t) in enumerate(pairs):
        if p:
            keep_since = None
            if active_at is None:
                active_at = t
            if not is_firing and t - active_at >= for_seconds - 1e-6:
                is_firing = True
        elif is_firing and keep_firing_for > 0:
            keep_since = t if keep_since is None else keep_since
            if t - keep_since >= keep_firing_for - 1e-6:
                active_at, is_firing, keep_since = None, False, None
        else:
            active_at, is_firing = None, False
        firing[k] = is_firing
    return firing


def query_range_series(
    api: PrometheusAPI, expr: str, start: float, n: int, step: float
) -> Iterator[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """Each result series of `expr` on the n-step grid from `start`: (labels, grid indices,
    values); the client asks in chunks under Prometheus' points-per-query limit."""
    try:
        result = api.query_range(expr, start, start + (n - 1) * step, step)
    except PrometheusAPIError as exc:
        raise RuntimeError(f"Prometheus refused {expr!r}: {exc}") from exc
    for s in result:
        tv = np.array([[float(t), float(v)] for t, v in s["values"]]).reshape(-1, 2)
        idx = np.rint((tv[:, 0] - start) / step).astype(int)
        ok = (idx >= 0) & (idx < n)
        yield s["metric"], idx[ok], tv[ok, 1]


def _query_range(api: PrometheusAPI, expr: str, start: float, n: int, step: float):
    """Per result series (labels as a sorted tuple), which of the n steps returned it."""
    present: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for labels, idx, _ in query_range_series(api, expr, start, n, step):
        present.setdefault(tuple(sorted(labels.items())), np.zeros(n, dtype=bool))[idx] = True
    return present


def _backfill_recording_rules(
    base: str, rules_file: Path, start: float, end: float, step: float, out: Path
) -> None:
    """Recording rules -> blocks, evaluated by Prometheus over our range at our step.

    promtool aligns the evaluation times to the group's own phase, so an alert reading a
    recorded series may lag by up to one step; rules reading other recorded series get nothing.
    """
    prometheus.run_promtool(
        [
            "tsdb", "create-blocks-from", "rules", "--quiet",
            f"--url={base}", f"--start={start:.3f}", f"--end={end:.3f}",
            f"--eval-interval={round(step * 1000)}ms", f"--output-dir={out}", str(rules_file),
        ],
        "promtool tsdb create-blocks-from rules",
    )  # fmt: skip


def evaluate_alert_rules(
    ds: Dataset,
    rules_file: Path,
    times_by_instance: dict[str, np.ndarray],
    workdir: Path | None = None,
    per_instance: bool = True,
    by_severity: bool = False,
) -> dict[str, dict[str, np.ndarray]]:
    """Per instance, per alert name: is the alert firing at each of that instance's times.

    `times_by_instance`: the dataset's scrape timestamps per instance (featurize's `times`).
    Rules are evaluated every dataset step on a grid starting half a step after the instance's
    first scrape (even if the requested times start later, so `for:` holds carry over), so
    evaluation k sees scrape k despite timing jitter, and never scrape k+1; each requested time
    takes the evaluation right after it. Several rules with one name (the mixin's critical and
    warning CoreDNSErrorsHigh) are OR-ed, unless `by_severity` keys them "name:severity".
    A result series maps to an instance by its `instance` label, else to the instance being
    evaluated (per_instance=True) or to every instance (a fleet-wide result, per_instance=False).
    `workdir` is where the temporary TSDBs go (default: the system temp dir); always removed.
    Raises FileNotFoundError naming how to install prometheus/promtool if they are missing.
    """
    rules_file = Path(rules_file)
    rules = rule_alerts(rules_file)
    recording = _has_recording_rules(rules_file)
    prometheus.binaries()  # FileNotFoundError saying how to install them, before any work

    unknown = sorted(set(times_by_instance) - set(ds.instances))
    if unknown:
        raise ValueError(f"instances not in the dataset: {unknown}")

    def key(r: dict[str, Any]) -> str:
        sev = r["labels"].get("severity", "")
        return f"{r['name']}:{sev}" if by_severity and sev else r["name"]

    times = {i: np.asarray(t, dtype=float) for i, t in times_by_instance.items()}
    out = {i: {key(r): np.zeros(len(t), dtype=bool) for r in rules} for i, t in times.items()}
    step = ds.step
    wanted = [i for i in times if len(times[i])]
    groups = [[i] for i in wanted] if per_instance else ([wanted] if wanted else [])
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="promql-baseline-", dir=workdir))
    try:
        for g, group in enumerate(groups):
            wd = tmp / f"eval-{g}"
            tsdb = wd / "tsdb"
            wd.mkdir()
            sub = Dataset(ds.samples[ds.samples["instance"].isin(group)], ds.labels, ds.meta)
            backfill(sub, wd)
            # From the first sample, not the first requested time: rate windows and `for:`
            # holds carry into a requested sub-range (a test split) as they would live.
            t0 = min(float(sub.samples["timestamp"].min()), *(times[i].min() for i in group))
            n = int(np.rint((max(float(times[i].max()) for i in group) - t0) / step)) + 1
            start = t0 + step / 2
            grid = start + np.arange(n) * step
            if recording:
                with prometheus.serving(tsdb, wd) as base:
                    _backfill_recording_rules(
                        base, rules_file, start, grid[-1], step, wd / "recorded"
                    )
                for block in (wd / "recorded").iterdir():
                    block.rename(tsdb / block.name)
            with prometheus.serving(tsdb, wd) as base, PrometheusAPI(base, timeout=300) as api:
                at = {
                    i: np.clip(np.rint((times[i] - t0) / step).astype(int), 0, n - 1) for i in group
                }
                for r in rules:
                    series = _query_range(api, r["expr"], start, n, step)
                    for labels, present in series.items():
                        firing = apply_for(present, grid, r["for"], r["keep_firing_for"])
                        inst = dict(labels).get("instance")
                        targets = group if inst is None else [inst] if inst in at else []
                        for i in targets:
                            out[i][key(r)] |= firing[at[i]]
            shutil.rmtree(wd, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
