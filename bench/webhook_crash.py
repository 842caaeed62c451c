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
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import webhook_load as wl  # noqa: E402


def crash_check(
    workdir: str | Path,
    *,
    duration: float = 60,
    rate: float = 500,
    kill_worker_at: float | None = None,
    kill_master_at: float | None = None,
    alerts: int = 2,
    workers: int = 2,
    threads: int = 8,
    resend_sample: int = 200,
    log=print,
) -> dict:
    kill_worker_at = duration / 3 if kill_worker_at is None else kill_worker_at
    kill_master_at = 2 * duration / 3 if kill_master_at is None else kill_master_at
    run = f"crash{int(time.time() * 1000)}"
    server = wl.start_server(workdir, workers=workers, threads=threads)
    events: dict[str, float | int | str] = {}
    state = {"server": server}

    def chaos() -> None:
        t0 = time.monotonic()
        time.sleep(max(0.0, kill_worker_at - (time.monotonic() - t0)))
        victim = state["server"].workers()[0]
        os.kill(victim, signal.SIGKILL)
        events["killed_worker"] = victim
        log(f"t={time.monotonic() - t0:5.1f}s kill -9 worker {victim}")
        time.sleep(max(0.0, kill_master_at - (time.monotonic() - t0)))
        old = state["server"]
        orphans = old.workers()
        os.kill(old.pid, signal.SIGKILL)
        old.proc.wait()
        events["killed_master"] = old.pid
        log(
            f"t={time.monotonic() - t0:5.1f}s kill -9 master {old.pid} (workers {orphans} orphaned)"
        )
        # Orphaned workers notice their parent is gone and exit; only then is the port free.
        deadline = time.monotonic() + 30
        while any(wl.alive(p) for p in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in orphans:  # still there after 30 s: not ours to wait for any longer
            if wl.alive(p):
                os.kill(p, signal.SIGKILL)
        down = time.monotonic()
        state["server"] = wl.restart(old)
        events["restart_s"] = round(time.monotonic() - down, 2)
        log(
            f"t={time.monotonic() - t0:5.1f}s restarted as {state['server'].pid} in {events['restart_s']}s"
        )

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        result = wl.run_load(
            f"{server.url}/webhook",
            rate=rate,
            duration=duration,
            payload=lambda i: wl.make_payload(run, i, alerts),
        )
        chaos_thread.join(60)
        if chaos_thread.is_alive():
            raise RuntimeError("restart did not finish")
        server = state["server"]
        log(f"load: {result.ok} acknowledged, {len(result.failed)} failed of {result.sent}")

        # Alertmanager's retries: the failed ones until they succeed, and some acknowledged again.
        retried = sorted(result.failed - result.acked)
        resent = random.Random(1).sample(
            sorted(result.acked), min(resend_sample, len(result.acked))
        )
        retry = wl.run_load(
            f"{server.url}/webhook",
            rate=rate,
            duration=0,
            indices=retried + resent,
            payload=lambda i: wl.make_payload(run, i, alerts),
        )
        if retry.ok != len(retried) + len(resent):
            raise RuntimeError(f"retries failed: {retry.summary()}")
    finally:
        state["server"].stop()
        server.stop()

    acked = result.acked
    expected = acked | set(retried)
    conn = sqlite3.connect(server.db)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        rows = conn.execute(
            "SELECT group_key, count(*) FROM alerts WHERE group_key LIKE ? GROUP BY group_key",
            (f"bench:{run}:%",),
        ).fetchall()
        deliveries = dict(
            conn.execute(
                "SELECT group_key, count(*) FROM deliveries WHERE group_key LIKE ? GROUP BY group_key",
                (f"bench:{run}:%",),
            ).fetchall()
        )
        occurrences = conn.execute(
            "SELECT count(*) FROM occurrences WHERE fingerprint LIKE ?", (f"{run}-%",)
        ).fetchone()[0]
    finally:
        conn.close()
    stored = {int(k.rsplit(":", 1)[1]): n for k, n in rows}
    missing_acked = sorted(i for i in acked if stored.get(i) != alerts)
    unexpected = sorted(set(stored) - expected)
    twice = sorted(k for k, n in deliveries.items() if n != 1)
    report = {
        "deliveries_sent": result.sent,
        "acknowledged_2xx": len(acked),
        "failed_then_retried": len(retried),
        "acknowledged_resent": len(resent),
        "acknowledged_in_store": len(acked) - len(missing_acked),
        "missing_acknowledged": len(missing_acked),
        "stored_more_than_once": len(twice) + sum(1 for n in stored.values() if n > alerts),
        "unexpected_in_store": len(unexpected),
        "alerts_expected": len(expected) * alerts,
        "alert_rows": sum(stored.values()),
        "occurrence_rows": occurrences,
        "integrity_check": integrity,
        "events": events,
        "load": result.summary(),
    }
    report["pass"] = (
        not missing_acked
        and not unexpected
        and report["stored_more_than_once"] == 0
        and report["alert_rows"] == report["alerts_expected"] == occurrences
        and integrity == "ok"
    )
    return report


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
