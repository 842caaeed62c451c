#!/usr/bin/env python3
"""Load benchmark for the webhook: sustained Alertmanager deliveries against gunicorn on loopback.

Open loop: delivery i is due at t0 + i/rate whatever the server does, so a slow server shows up
as latency (measured from the due time, no coordinated omission) rather than as a lower rate.
The generator and the server harness are lab/deliveries.py and lab/webhook_server.py.

    .venv/bin/python bench/webhook_load.py --rate 600 --duration 60          # starts its own server
    .venv/bin/python bench/webhook_load.py --url http://127.0.0.1:9095 --token-file t --rate 500

Prints a JSON summary (achieved rate, p50/p90/p99/max latency, errors) and exits 1 when the
targets (>= --target-rate deliveries/s, p99 < --target-p99-ms) are missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from coredns_anomaly.lab.deliveries import make_payload, run_load
from coredns_anomaly.lab.webhook_server import TOKEN, cpu_pressure, cpu_seconds, start_server


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", help="existing server base URL (default: start one)")
    ap.add_argument("--token-file", help="bearer token file for --url")
    ap.add_argument("--rate", type=float, default=600, help="deliveries per second (default 600)")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=32, help="client threads")
    ap.add_argument("--alerts", type=int, default=2, help="alerts per delivery")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--worker-class", default="gevent")
    ap.add_argument("--workdir", help="where the started server keeps its store (default: temp)")
    ap.add_argument("--target-rate", type=float, default=500)
    ap.add_argument("--target-p99-ms", type=float, default=50)
    a = ap.parse_args()

    run = f"load{int(time.time())}"
    server = None
    tmp = None
    if a.url:
        url, token = (
            a.url.rstrip("/"),
            Path(a.token_file).read_text().strip() if a.token_file else TOKEN,
        )
    else:
        tmp = tempfile.TemporaryDirectory(prefix="webhook-bench-")
        server = start_server(
            a.workdir or tmp.name, workers=a.workers, threads=a.threads, worker_class=a.worker_class
        )
        url, token = server.url, TOKEN
    try:
        # Warm up (imports, first connections), then the measured run.
        run_load(
            f"{url}/webhook",
            rate=200,
            duration=1,
            token=token,
            payload=lambda i: make_payload(run + "w", i, a.alerts),
        )
        pids = [*server.workers(), server.pid] if server else []
        server_cpu0 = sum(cpu_seconds(p) for p in pids)
        client_cpu0 = time.process_time()
        pressure_before = cpu_pressure()
        result = run_load(
            f"{url}/webhook",
            rate=a.rate,
            duration=a.duration,
            token=token,
            concurrency=a.concurrency,
            payload=lambda i: make_payload(run, i, a.alerts),
        )
        server_cpu = sum(cpu_seconds(p) for p in pids) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        pressure_after = cpu_pressure()
    finally:
        if server:
            server.stop()
        if tmp:
            tmp.cleanup()
    summary = result.summary()
    summary.update(
        {
            "target_rate": a.rate,
            "alerts_per_delivery": a.alerts,
            "server": "external"
            if a.url
            else f"gunicorn {a.worker_class} workers={a.workers} threads={a.threads}",
            "cpus": os.cpu_count(),
            "loadavg_after": os.getloadavg(),
            "cpu_pressure_before": pressure_before,
            "cpu_pressure_after": pressure_after,
            "server_cpu_ms_per_delivery": round(server_cpu / max(1, result.sent) * 1000, 3)
            if server
            else None,
            "client_cpu_ms_per_delivery": round(client_cpu / max(1, result.sent) * 1000, 3),
        }
    )
    p99 = summary["latency_ms"].get("p99", float("inf"))
    errors = result.sent - result.ok
    # Sustained = every delivery of the rate x duration schedule acknowledged (none failed), with
    # latency measured from each one's due time, so falling behind shows up in p99.
    summary["acknowledged_per_scheduled_s"] = round(result.ok / a.duration, 1)
    summary["pass"] = (
        summary["acknowledged_per_scheduled_s"] >= a.target_rate
        and p99 < a.target_p99_ms
        and errors == 0
    )
    print(json.dumps(summary, indent=2))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
