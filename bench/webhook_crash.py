#!/usr/bin/env python3
"""Crash consistency: kill -9 a gunicorn worker, then the master, under load; restart; check.

Every delivery carries unique alerts. The load generator remembers which deliveries got a 2xx;
the ones that failed (connection refused or reset while the server was down) are sent again
after the run, as Alertmanager would retry them, and a sample of acknowledged ones is re-sent
too (a retry whose first response was lost). Then the store must hold every acknowledged
delivery's alerts exactly once, and nothing else.

    .venv/bin/python bench/webhook_crash.py --duration 60 --rate 500
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile

from coredns_anomaly.lab.webhook_faults import crash_check


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--kill-worker-at", type=float)
    ap.add_argument("--kill-master-at", type=float)
    ap.add_argument("--workdir", help="keep the store here (default: temp, removed)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="webhook-crash-") as tmp:
        report = crash_check(
            a.workdir or tmp,
            duration=a.duration,
            rate=a.rate,
            kill_worker_at=a.kill_worker_at,
            kill_master_at=a.kill_master_at,
            log=lambda m: print(m, file=sys.stderr),
        )
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
