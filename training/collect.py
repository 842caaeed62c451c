"""`collect`: a dataset from a production Prometheus (or Thanos, Mimir) over its HTTP API.

Lists the CoreDNS targets' series with /api/v1/series, then pulls each metric with
/api/v1/query_range in chunks under Prometheus's 11,000-points-per-series limit. The result
has the lab's format, so everything downstream (features, training, plots) works unchanged.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from coredns_anomaly.contracts.names import FALSE_ALARM, UNCLASSIFIED_ANOMALY, VERDICT_ANOMALY
from coredns_anomaly.exporter.promclient import PrometheusAPI, PrometheusAPIError
from coredns_anomaly.exporter.scrape import HttpOptions

from . import dataset as ds_mod

log = logging.getLogger(__name__)

# The families features and people may want; the rest of a target's page is kept too.
DROP_LABELS = ("__name__", "instance", "job")


class CollectError(PrometheusAPIError):
    """Prometheus could not give us the data; the message says what it answered."""


def parse_time(text: str) -> float:
    """RFC 3339 (Z or offset) or unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{text!r} is neither RFC 3339 nor unix seconds") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def with_name(selector: str, name: str) -> str:
    """`{job="x"}` + name -> `{__name__="name",job="x"}`."""
    m = re.fullmatch(r"\s*\{(.*)\}\s*", selector)
    if not m:
        raise ValueError(f'selector must look like {{label="value",...}}, got {selector!r}')
    inner = m.group(1).strip()
    return "{" + f'__name__="{name}"' + ("," + inner if inner else "") + "}"


def client(base_url: str, http: HttpOptions | None = None, timeout: float = 60.0) -> PrometheusAPI:
    """The API client of `collect`, `fit --prometheus` and `label --prometheus`: GET requests
    (what every gateway passes), the environment's proxies kept, CollectError on failure."""
    http = replace(http or HttpOptions(), trust_env=True)
    return PrometheusAPI(base_url, http, timeout, post=False, error=CollectError)


def series_names(api: PrometheusAPI, selector: str, start: float, end: float) -> list[str]:
    return sorted({s["__name__"] for s in api.series(selector, start, end)})


def collect(
    api: PrometheusAPI, selector: str, start: float, end: float, step: float
) -> ds_mod.Dataset:
    names = series_names(api, selector, start, end)
    if not names:
        raise CollectError(f"no series match {selector} between {start} and {end}")
    cols: dict[str, list] = {c: [] for c in ds_mod.SAMPLE_COLUMNS}
    versions = set()
    for i, name in enumerate(names):
        if i % 20 == 0:
            log.info("collect: %d/%d metrics", i, len(names))
        for series in api.query_range(with_name(selector, name), start, end, step):
            metric = series["metric"]
            if name == "coredns_build_info" and "version" in metric:
                versions.add(metric["version"])
            inst = metric.get("instance", "")
            labels = ds_mod.format_labels({k: v for k, v in metric.items() if k not in DROP_LABELS})
            vals = series.get("values", [])
            cols["timestamp"] += [float(t) for t, _ in vals]
            cols["value"] += [float(v) for _, v in vals]
            cols["instance"] += [inst] * len(vals)
            cols["name"] += [name] * len(vals)
            cols["labels"] += [labels] * len(vals)
    samples = pd.DataFrame(cols)
    samples = _fill_up(samples, names)
    meta = {
        "source": "prometheus",
        "prometheus_url": api.base,
        "selector": selector,
        "step_seconds": step,
        "collected_from": start,
        "collected_to": end,
        "coredns_version": ",".join(sorted(versions)) or "unknown",
        "host": api.base,
    }
    return ds_mod.Dataset(samples=samples, labels=ds_mod.empty_labels(), meta=meta)


def _fill_up(samples: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Without `up` in the selection, presence of any sample marks the target up at a step."""
    if "up" in names or samples.empty:
        return samples
    ups = (
        samples[["timestamp", "instance"]].drop_duplicates().assign(name="up", labels="", value=1.0)
    )
    return pd.concat([samples, ups[list(ds_mod.SAMPLE_COLUMNS)]], ignore_index=True)


def labels_from_file(path: Path) -> pd.DataFrame:
    """The webhook's label file (one format, defined in webhook/labels.py) as dataset labels."""
    from ..webhook.labels import read_label_file

    rows = []
    for r in read_label_file(path):
        anomaly = r.verdict == VERDICT_ANOMALY
        rows.append(
            {
                "instance": r.instance,
                "class": (r.anomaly_class or UNCLASSIFIED_ANOMALY) if anomaly else FALSE_ALARM,
                "start": r.start.timestamp(),
                "end": r.end.timestamp(),
                "intensity": math.nan,
                "anomaly": anomaly,
                "params": "{}",
                "source": r.source,
            }
        )
    return pd.DataFrame(rows, columns=list(ds_mod.LABEL_COLUMNS)) if rows else ds_mod.empty_labels()


def api_from_args(args: argparse.Namespace) -> tuple[PrometheusAPI, float, float]:
    """The API client and the range of `collect` and `fit --prometheus` flags (one reading of
    the range, auth and TLS options for both); ValueError names what is wrong."""
    start, end = parse_time(args.start), parse_time(args.end)
    with_name(args.selector, "x")
    if end <= start or args.step <= 0:
        raise ValueError("need --end after --start and a positive --step")
    token = args.bearer_token_file.read_text().strip() if args.bearer_token_file else None
    basic = None
    if args.basic_auth_user:
        if not args.basic_auth_password_file:
            raise ValueError("--basic-auth-user needs --basic-auth-password-file")
        basic = (args.basic_auth_user, args.basic_auth_password_file.read_text().strip())
    http = HttpOptions(
        bearer_token=token,
        basic_auth=basic,
        ca_file=str(args.ca_file) if args.ca_file else None,
        cert=(str(args.cert_file), str(args.key_file))
        if args.cert_file and args.key_file
        else None,
        insecure_skip_verify=args.insecure_skip_verify,
    )
    return client(args.prometheus, http), start, end


def main(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError

    try:
        api, start, end = api_from_args(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    try:
        ds = collect(api, args.selector, start, end, args.step)
    except CollectError as exc:
        raise UsageError(str(exc)) from exc
    if args.labels:
        ds.labels = labels_from_file(args.labels)
    ds_mod.write(ds, args.out)
    n_inst = ds.samples["instance"].nunique()
    print(
        f"dataset: {args.out} ({len(ds.samples)} samples, {n_inst} instances, {len(ds.labels)} labels)"
    )
    return 0
