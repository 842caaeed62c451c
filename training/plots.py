"""Pictures of datasets: the main CoreDNS signals over time with labelled episodes shaded."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..exporter.features import FEATURE_NAMES  # noqa: E402
from .dataset import Dataset  # noqa: E402
from .featurize import featurize  # noqa: E402

CLASS_COLORS = {
    "upstream_latency": "#1f77b4", "upstream_servfail": "#d62728", "upstream_loss": "#9467bd",
    "query_flood": "#ff7f0e", "random_subdomain": "#8c564b", "cache_thrash": "#e377c2",
    "cpu_starvation": "#7f7f7f", "tcp_fallback": "#bcbd22", "misconfig_refused": "#17becf",
}  # fmt: skip

# (title, [(feature, label, transform to display units)])
PANELS = [
    ("queries/s", [("dns_requests_rate", "requests", np.expm1), ("upstream_requests_rate", "upstream", np.expm1)]),
    ("response share", [("dns_rcode_nxdomain_share", "NXDOMAIN", None), ("dns_rcode_servfail_share", "SERVFAIL", None), ("dns_rcode_refused_share", "REFUSED", None), ("dns_tcp_share", "TCP", None)]),
    ("latency, ms", [("dns_latency_p50", "p50", lambda v: 1000 * 10**v), ("dns_latency_p99", "p99", lambda v: 1000 * 10**v), ("upstream_latency_p99", "upstream p99", lambda v: 1000 * 10**v)]),
    ("cache", [("cache_hit_ratio", "hit ratio", None), ("cache_evictions_rate", "evictions/s (log1p)", None)]),
    ("CPU, cores", [("process_cpu_cores", "cpu", None)]),
]  # fmt: skip


def timeline(ds: Dataset, out: str | Path, instance: str | None = None) -> Path:
    """One column per instance, one row per panel; anomalous episodes shaded by class."""
    out = Path(out)
    feats = featurize(ds, [instance] if instance else None)
    ncol = len(feats)
    fig, axes = plt.subplots(
        len(PANELS), ncol, figsize=(7 * ncol, 2.2 * len(PANELS) + 1), sharex="col", squeeze=False
    )
    t0 = min(f.times[0] for f in feats)
    idx = {n: i for i, n in enumerate(FEATURE_NAMES)}
    for c, f in enumerate(feats):
        minutes = (f.times - t0) / 60
        lab = ds.labels[ds.labels["instance"] == f.instance]
        for r, (title, series) in enumerate(PANELS):
            ax = axes[r][c]
            for feat, label, tf in series:
                y = f.X[:, idx[feat]]
                ax.plot(minutes, tf(y) if tf else y, lw=0.8, label=label)
            if title == "latency, ms":
                ax.set_yscale("log")
            for row in lab.itertuples(index=False):
                a, b = (row.start - t0) / 60, (row.end - t0) / 60
                if row.anomaly:
                    ax.axvspan(a, b, color=CLASS_COLORS.get(row[1], "red"), alpha=0.25, lw=0)
                else:
                    ax.axvline(a, color="k", ls=":", lw=0.6)
            ax.set_ylabel(title, fontsize=8)
            ax.tick_params(labelsize=7)
            if c == 0:
                ax.legend(fontsize=6, loc="upper left")
        axes[0][c].set_title(f.instance, fontsize=10)
        axes[-1][c].set_xlabel("minutes")
    handles = [plt.Rectangle((0, 0), 1, 1, color=col, alpha=0.4) for col in CLASS_COLORS.values()]
    fig.legend(handles, list(CLASS_COLORS), loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(
        f"{ds.meta.get('source', 'dataset')} {ds.meta.get('preset', '')}: episodes shaded, benign events dotted",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
