"""Engineers' verdicts and weak labels (the webhook's label files) merged into a dataset.

The file format has one definition, in webhook/labels.py. Verified anomalies and weak ones
(alerts fired by the user's existing rules) become anomalous episodes with their source kept;
false alarms become explicit normal ranges that training weights as hard negatives. Where they
overlap, webhook.labels.label_rank decides (verified > false alarm > weak), in Dataset.label_at.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..webhook.labels import ALL_INSTANCES
from . import dataset as ds_mod

log = logging.getLogger(__name__)


def merge_label_files(
    ds: ds_mod.Dataset, files: list[Path], include_weak: bool = True
) -> ds_mod.Dataset:
    from .collect import labels_from_file

    extra = [labels_from_file(Path(f)) for f in files]
    extra = [e if include_weak else e[e["source"] != "weak"] for e in extra]
    for f, e in zip(files, extra, strict=True):
        fleet = (e["source"] == "weak") & (e["instance"] == ALL_INSTANCES)
        if fleet.any():  # files written before weak labels had to name their instance
            log.warning(
                "%s: %d weak labels name no instance and are ignored: an alert about the whole "
                "fleet cannot say which CoreDNS was anomalous", f, int(fleet.sum()),
            )  # fmt: skip
    extra = [e[~((e["source"] == "weak") & (e["instance"] == ALL_INSTANCES))] for e in extra]
    labels = pd.concat([ds.labels, *extra], ignore_index=True) if extra else ds.labels
    return ds_mod.Dataset(ds.samples, labels, dict(ds.meta, label_files=[str(f) for f in files]))
