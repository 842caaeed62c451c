"""How many queries per second the lab sustains on this machine (2 cores).

    .venv/bin/python bench/lab_qps.py [--seconds 20]

Two figures, one lab: (1) dnsperf, unthrottled, against the front CoreDNS with the flood query
mix (cluster lookups through the search path, ~60% NXDOMAIN); (2) the lab's own asyncio traffic
generator driven at rising rates, with the share of queries answered. Writes
bench/results/lab_qps.json.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

from coredns_anomaly.lab.lab import Lab, LabSettings


def dnsperf_max(lab: Lab, seconds: int) -> dict:
    inst = lab.instances[0]
    out = subprocess.run(
        [
            lab.dnsperf_bin, "-s", "127.0.0.1", "-p", str(inst.front.ports["dns"]),
            "-d", str(inst.query_files["flood"]), "-l", str(seconds), "-c", "8", "-q", "500", "-T", "1",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lost = re.search(r"Queries lost:\s+(\d+) \(([\d.]+)%\)", out)
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    return {
        "qps": qps,
        "lost_percent": float(lost.group(2)) if lost else None,
        "avg_latency_s": float(lat.group(1)) if lat else None,
    }


def generator_rates(lab: Lab, seconds: int) -> list[dict]:
    inst = lab.instances[0]
    rows = []
    for lookups in (150, 400, 800, 1200):
        inst.traffic.curve.base = lookups
        time.sleep(2)
        s0 = dict(inst.traffic.stats)
        t0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        s1 = dict(inst.traffic.stats)
        sent = s1.get("sent", 0) - s0.get("sent", 0)
        answered = sum(
            s1.get(k, 0) - s0.get(k, 0) for k in ("NOERROR", "NXDOMAIN", "SERVFAIL", "REFUSED")
        )
        rows.append(
            {
                "target_lookups_per_s": lookups,
                "queries_per_s": sent / dt,
                "answered_share": answered / max(sent, 1),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("bench/results/lab_qps.json"))
    args = ap.parse_args()
    with Lab(LabSettings(instances=1, base_rates=(50.0,))) as lab:
        res = {"dnsperf_unthrottled": dnsperf_max(lab, args.seconds)}
        res["generator"] = generator_rates(lab, args.seconds // 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
