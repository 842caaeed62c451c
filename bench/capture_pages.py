"""Record real CoreDNS /metrics pages (normal, under faults, after a restart) for the exporter's
benchmarks and tests: the exporter bench must parse what CoreDNS really serves.

    .venv/bin/python bench/capture_pages.py --out bench/pages
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import requests

from coredns_anomaly.lab import faults
from coredns_anomaly.lab.lab import Lab, LabSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/pages"))
    ap.add_argument("--per-phase", type=int, default=6, help="pages per phase, one per 2 s")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with Lab(LabSettings(instances=1, step=2.0, seed=11, base_rates=(150.0,))) as lab:
        inst = lab.instances[0]
        url = inst.front.metrics_url
        time.sleep(8)  # let traffic fill caches and histograms

        def grab(phase: str) -> None:
            for k in range(args.per_phase):
                text = requests.get(url, timeout=5).text
                path = args.out / f"coredns-{phase}-{k:02d}.prom.gz"
                path.write_bytes(gzip.compress(text.encode(), mtime=0))
                time.sleep(2)

        grab("normal")
        for cls in ("upstream_latency", "random_subdomain", "upstream_servfail"):
            faults.apply_fault(inst, cls, 0.7)
            time.sleep(4)
            grab(cls)
            faults.clear_fault(inst, cls)
            time.sleep(4)
    print("pages in", args.out, sorted(p.name for p in args.out.glob("*.prom.gz"))[:3], "...")


if __name__ == "__main__":
    main()
