"""The dataset format: raw metric samples, labelled episodes and a card of metadata.

A dataset is a directory (format in docs/dataset.md):
  samples.parquet  one row per sample: timestamp, instance, name, labels, value (raw, as scraped)
  labels.csv       one row per episode or benign event: instance, class, start, end, intensity,
                   anomaly, params, source
  meta.json        the card: CoreDNS version, step, traffic profile, seed, host, durations, ...
Raw samples (not features) are kept so any feature can be recomputed later.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..contracts.names import FALSE_ALARM
from ..webhook.labels import label_rank

FORMAT_VERSION = 1
SAMPLE_COLUMNS = ("timestamp", "instance", "name", "labels", "value")
LABEL_COLUMNS = ("instance", "class", "start", "end", "intensity", "anomaly", "params", "source")
NORMAL = "normal"


class DatasetError(ValueError):
    """A dataset directory that cannot be read; the message says what and how to fix it."""


def format_labels(labels: dict[str, str]) -> str:
    """Canonical label text: sorted, exposition-escaped, e.g. `le="0.1",type="A"`."""
    parts = []
    for k in sorted(labels):
        v = labels[k].replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        parts.append(f'{k}="{v}"')
    return ",".join(parts)


def parse_labels(text: str) -> dict[str, str]:
    """Inverse of format_labels."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.index("=", i)
        key = text[i:eq]
        if text[eq + 1] != '"':
            raise DatasetError(f"bad label text {text!r}")
        j, buf = eq + 2, []
        while text[j] != '"':
            if text[j] == "\\":
                buf.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[j + 1], text[j + 1]))
                j += 2
            else:
                buf.append(text[j])
                j += 1
        out[key] = "".join(buf)
        i = j + 2 if j + 1 < n and text[j + 1] == "," else j + 1
    return out


@dataclass
class Dataset:
    """Samples (long table), labels and card, as pandas frames and a dict."""

    samples: pd.DataFrame
    labels: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def instances(self) -> list[str]:
        return sorted(self.samples["instance"].unique().tolist())

    @property
    def step(self) -> float:
        return float(self.meta["step_seconds"])

    def anomalies(self) -> pd.DataFrame:
        return self.labels[self.labels["anomaly"]]

    def instance_frames(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """Per instance, a wide frame: one row per scrape time, one column per series."""
        for inst, df in self.samples.groupby("instance", observed=True):
            key = df["name"].astype(str) + "{" + df["labels"].astype(str) + "}"
            wide = df.assign(series=key).pivot_table(
                index="timestamp", columns="series", values="value", aggfunc="last"
            )
            yield str(inst), wide.sort_index()

    def ranked_labels(self, instance: str) -> pd.DataFrame:
        """This instance's labels that say something of its steps, lowest precedence first
        (webhook.labels.label_rank): applied in this order, the stronger one wins."""
        lab = self.labels[self.labels["instance"].isin([instance, "*"])]
        rank = [
            label_rank(src, bool(a), cls)
            for src, a, cls in zip(lab["source"], lab["anomaly"], lab["class"], strict=True)
        ]
        lab = lab.assign(_rank=rank)
        return lab[lab["_rank"] > 0].sort_values("_rank", kind="stable")

    def label_at(self, instance: str, times: np.ndarray) -> np.ndarray:
        """Anomaly class per scrape time ('normal' where no episode overlaps the step, or where
        an engineer's false-alarm verdict overrides a weak label)."""
        out = np.full(len(times), NORMAL, dtype=object)
        lab = self.ranked_labels(instance)
        for cls, start, end, anomaly in zip(
            lab["class"], lab["start"], lab["end"], lab["anomaly"], strict=True
        ):
            out[overlapping(times, start, end, self.step)] = cls if anomaly else NORMAL
        return out


def empty_labels() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_LABEL_DTYPES[c]) for c in LABEL_COLUMNS})


_LABEL_DTYPES = {
    "instance": "object",
    "class": "object",
    "start": "float64",
    "end": "float64",
    "intensity": "float64",
    "anomaly": "bool",
    "params": "object",
    "source": "object",
}


def write(ds: Dataset, path: str | Path) -> Path:
    """Write atomically-ish: into a temp dir, then rename over the target."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    samples = ds.samples.loc[:, list(SAMPLE_COLUMNS)].copy()
    for c in ("instance", "name", "labels"):
        samples[c] = samples[c].astype("category")
    samples = samples.sort_values(["instance", "name", "labels", "timestamp"], kind="stable")
    samples.to_parquet(
        tmp / "samples.parquet",
        index=False,
        compression="zstd",
        compression_level=9,
        row_group_size=1_000_000,
    )
    labels = ds.labels.loc[:, list(LABEL_COLUMNS)] if len(ds.labels) else empty_labels()
    labels.sort_values(["instance", "start"]).to_csv(tmp / "labels.csv", index=False)
    meta = dict(ds.meta, format_version=FORMAT_VERSION)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    if path.exists():
        for f in path.iterdir():
            if f.name in ("samples.parquet", "labels.csv", "meta.json"):
                f.unlink()
    path.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        f.replace(path / f.name)
    tmp.rmdir()
    return path


def load(path: str | Path) -> Dataset:
    """Load a dataset directory in one call; clear errors for anything malformed."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(
            f"{path}: not a dataset directory (expected samples.parquet, labels.csv, meta.json)"
        )
    for name in ("samples.parquet", "labels.csv", "meta.json"):
        if not (path / name).is_file():
            raise DatasetError(f"{path}: missing {name}; is this a coredns-anomaly dataset?")
    try:
        meta = json.loads((path / "meta.json").read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path / 'meta.json'}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or "step_seconds" not in meta:
        raise DatasetError(f"{path / 'meta.json'}: must be an object with step_seconds")
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {meta['format_version']} is newer than this reader "
            f"({FORMAT_VERSION}); upgrade coredns-anomaly"
        )
    try:
        samples = pd.read_parquet(path / "samples.parquet")
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DatasetError(f"{path / 'samples.parquet'}: unreadable parquet ({exc})") from exc
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise DatasetError(f"{path / 'samples.parquet'}: missing columns {missing}")
    try:
        labels = pd.read_csv(path / "labels.csv", dtype={"params": "object", "source": "object"})
    except Exception as exc:
        raise DatasetError(f"{path / 'labels.csv'}: unreadable CSV ({exc})") from exc
    missing = [c for c in LABEL_COLUMNS if c not in labels.columns]
    if missing:
        raise DatasetError(f"{path / 'labels.csv'}: missing columns {missing}")
    bad = labels[~(labels["end"] > labels["start"])]
    if len(bad):
        raise DatasetError(
            f"{path / 'labels.csv'}: {len(bad)} rows have end <= start (first at line {bad.index[0] + 2})"
        )
    labels["anomaly"] = labels["anomaly"].astype(bool)
    labels["params"] = labels["params"].fillna("{}")
    labels["source"] = labels["source"].fillna("lab")
    return Dataset(samples=samples, labels=labels, meta=meta)


def summary(ds: Dataset) -> dict[str, Any]:
    """What a dataset holds: the figures its card and `dataset info` report."""
    t = ds.samples["timestamp"]
    per_inst = ds.samples.groupby("instance", observed=True)["timestamp"].agg(["min", "max"])
    total = float((per_inst["max"] - per_inst["min"]).sum())
    a = ds.anomalies()
    anomalous = float((a["end"] - a["start"]).sum())
    return {
        "instances": len(per_inst),
        "samples": len(ds.samples),
        "series": int(ds.samples.groupby(["name", "labels"], observed=True).ngroups),
        "wall_minutes": round(float(t.max() - t.min()) / 60, 1),
        "instance_minutes": round(total / 60, 1),
        "anomaly_free_minutes": round((total - anomalous) / 60, 1),
        "episodes_per_class": a["class"].value_counts().sort_index().to_dict(),
        "benign_events": ds.labels[~ds.labels["anomaly"]]["class"]
        .value_counts()
        .sort_index()
        .to_dict(),
        "step_seconds": ds.step,
    }


def overlapping(times: np.ndarray, start: float, end: float, step: float) -> np.ndarray:
    """Scrapes whose step overlaps [start, end).

    A scrape at t measures the interval since the previous one, (t - step, t]: its rates are
    counter deltas over it. So the first scrape after an episode ends still measured part of
    the episode and belongs to it; labelling by the instant t alone called it normal and
    counted the model's correct alarm there as a false positive.
    """
    times = np.asarray(times, dtype=float)
    return (times >= start) & (times - step < end)


def label_sources_at(ds: Dataset, instance: str, times: np.ndarray) -> np.ndarray:
    """Per time: the source of the anomalous label covering it (lab, verified, weak), or
    'false_alarm' inside a range an engineer marked as a false alarm, else ''."""
    out = np.full(len(times), "", dtype=object)
    mine = ds.ranked_labels(instance)
    for start, end, anomaly, source in zip(
        mine["start"], mine["end"], mine["anomaly"], mine["source"], strict=True
    ):
        out[overlapping(times, start, end, ds.step)] = source if anomaly else FALSE_ALARM
    return out


def resample_to(ds: Dataset, step: float) -> Dataset:
    """The scrapes a Prometheus scraping every `step` seconds would hold: per instance, the
    first recorded scrape at or after each multiple of `step` from its first one. With a 2 s
    recording and a 15 s step the gaps are 14 or 16 s, a real scrape's jitter; the card
    records the mean."""
    if not (math.isfinite(step) and step >= ds.step):
        raise ValueError(f"step {step} must be >= the recording's {ds.step:g} s")
    keep = []
    for _inst, df in ds.samples.groupby("instance", observed=True):
        times = np.sort(df["timestamp"].unique())
        n = int(math.floor((times[-1] - times[0]) / step + 1e-6)) + 1
        grid = times[0] + step * np.arange(n)
        picked = np.unique(times[np.minimum(np.searchsorted(times, grid - 1e-6), len(times) - 1)])
        keep.append(df[df["timestamp"].isin(picked)])
    samples = pd.concat(keep, ignore_index=True) if keep else ds.samples.iloc[:0]
    meta = dict(ds.meta)
    meta["step_seconds"] = float(step)
    meta["resampled_from"] = {"step_seconds": ds.step, "to_step_seconds": float(step)}
    return Dataset(samples, ds.labels.copy(), meta)


def resample(ds: Dataset, every: int) -> Dataset:
    """Every `every`-th scrape of each instance: what a Prometheus scraping `every` times less
    often would hold (counters are cumulative, so nothing else changes). Labels are intervals
    and carry over as they are; the card records the new step and where it came from."""
    if every < 1:
        raise ValueError("every must be >= 1")
    keep = []
    for _inst, df in ds.samples.groupby("instance", observed=True):
        times = np.sort(df["timestamp"].unique())
        keep.append(df[df["timestamp"].isin(times[::every])])
    samples = pd.concat(keep, ignore_index=True) if keep else ds.samples.iloc[:0]
    meta = dict(ds.meta)
    meta["step_seconds"] = ds.step * every
    meta["resampled_from"] = {"step_seconds": ds.step, "every": every}
    return Dataset(samples, ds.labels.copy(), meta)
