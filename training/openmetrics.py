"""Dataset -> OpenMetrics text that `promtool tsdb create-blocks-from openmetrics` accepts.

Every sample name becomes its own family of type `unknown`: Prometheus stores those exactly
like the scraped series (type is metadata only), and it keeps the export valid for any name,
histogram buckets included. Each series gets `instance` and `job` labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .dataset import Dataset, format_labels, parse_labels


def _series_labels(labels: str, instance: str, job: str) -> str:
    lb = parse_labels(labels) if labels else {}
    lb.setdefault("instance", instance)
    lb.setdefault("job", job)
    return format_labels(lb)


def write_openmetrics(ds: Dataset, out: str | Path, job: str = "coredns-lab") -> int:
    """Write the whole dataset; returns the number of samples written."""
    df = ds.samples
    df = df[np.isfinite(df["value"].to_numpy(dtype=float))]
    keys = df[["instance", "labels"]].drop_duplicates()
    lab_text = {
        (i, lt): _series_labels(str(lt), str(i), job)
        for i, lt in zip(keys["instance"], keys["labels"], strict=True)
    }
    df = df.sort_values(["name", "instance", "labels", "timestamp"], kind="stable")
    out = Path(out)
    n = 0
    with out.open("w") as fh:
        for name, fam in df.groupby("name", sort=True, observed=True):
            fh.write(f"# TYPE {name} unknown\n")
            series = [
                lab_text[(i, lt)] for i, lt in zip(fam["instance"], fam["labels"], strict=True)
            ]
            body = (
                pd.Series([f"{name}{{{s}}} " for s in series], index=fam.index)
                + fam["value"].map(repr)
                + " "
                + fam["timestamp"].map(lambda t: f"{t:.3f}")
            )
            fh.write("\n".join(body) + "\n")
            n += len(fam)
        fh.write("# EOF\n")
    return n
