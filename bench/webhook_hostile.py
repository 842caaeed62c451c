#!/usr/bin/env python3
"""Hostile clients against the webhook: slow connections while Alertmanager delivers (issue 13).

A separate process holds N hostile connections to the real gunicorn on loopback, reopening each
one the server cuts, so the pressure never lets up:

* ``headers``: slowloris, a POST whose headers never end (one more header line every 2 s);
* ``idle``: connects and sends nothing (over TLS: not even a ClientHello);
* ``body``: complete headers without credentials, then a body of 1 byte every 2 s.

Meanwhile the open-loop load generator (lab/deliveries.py) sends unique deliveries at --rate
(latency from each one's due time), and a prober asks /-/healthy twice a second on a new
connection each time, as a kubelet would. Afterwards the store must hold every acknowledged
delivery's alerts exactly once ("nothing lost"). Targets: p99 < 100 ms, no delivery failed or
missing.

    .venv/bin/python bench/webhook_hostile.py                       # gevent (shipped) + gthread
    .venv/bin/python bench/webhook_hostile.py --runs gevent --slow 1000 --rate 200 --duration 60

Writes bench/results/webhook_hostile.json and prints a table. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from coredns_anomaly.lab.deliveries import make_payload, run_load
from coredns_anomaly.lab.webhook_faults import AttackSpec, HostileClients
from coredns_anomaly.lab.webhook_server import cpu_pressure, cpu_seconds, start_server

RESULTS = Path(__file__).resolve().parent / "results" / "webhook_hostile.json"
KINDS = ("headers", "idle", "body")


# -- a run ----------------------------------------------------------------------------------------


def _probe_health(url: str, stop: threading.Event, out: list, ctx) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/-/healthy", timeout=5, context=ctx) as r:
                ok = r.status == 200
        except OSError:
            ok = False
        out.append((ok, time.perf_counter() - t))
        stop.wait(0.5)


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _make_cert(workdir: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and a web config using it (openssl CLI)."""
    from coredns_anomaly.loop.tls import openssl_cert

    cert, key = openssl_cert(workdir, "tls")
    web = workdir / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    return web


def run_one(
    name: str,
    *,
    worker_class: str,
    slow: int,
    rate: float,
    duration: float,
    mix: dict[str, float],
    interval: float = 2.0,
    tls: bool = False,
    workers: int = 2,
    threads: int = 8,
    client_timeout: float = 5.0,
    log=print,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="webhook-hostile-") as tmp:
        work = Path(tmp)
        extra = ["--web-config-file", str(_make_cert(work))] if tls else []
        server = start_server(
            work,
            workers=workers,
            threads=threads,
            worker_class=worker_class,
            extra_args=extra,
            scheme="https" if tls else "http",
        )
        ctx = ssl._create_unverified_context() if tls else None
        run = f"hostile{int(time.time() * 1000)}"
        attacker = None
        try:
            run_load(
                f"{server.url}/webhook",
                rate=100,
                duration=1,
                payload=lambda i: make_payload(run + "w", i),
                ssl_context=ctx,
            )
            if slow:
                spec = AttackSpec(server.port, slow, mix, interval, duration + 10, tls)
                attacker = HostileClients(spec).__enter__()
                log(f"  {name}: {attacker.opened} hostile connections open")
                time.sleep(1)
            pids = [server.pid, *server.workers()]
            cpu0 = sum(cpu_seconds(p) for p in pids)
            health: list = []
            stop = threading.Event()
            prober = threading.Thread(
                target=_probe_health, args=(server.url, stop, health, ctx), daemon=True
            )
            prober.start()
            rss_samples: list[float] = []
            sampler_stop = threading.Event()

            def sample() -> None:
                while not sampler_stop.wait(2):
                    rss_samples.append(_rss_mb([server.pid, *server.workers()]))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            result = run_load(
                f"{server.url}/webhook",
                rate=rate,
                duration=duration,
                payload=lambda i: make_payload(run, i),
                timeout=client_timeout,
                ssl_context=ctx,
            )
            stop.set()
            sampler_stop.set()
            prober.join(10)
            cpu = sum(cpu_seconds(p) for p in [server.pid, *server.workers()]) - cpu0
            attack: dict = {}
            if attacker is not None:
                attacker.__exit__(None, None, None)
                attack = attacker.stats
            # Nothing lost: every acknowledged delivery's 2 alerts are in the store, once.
            conn = sqlite3.connect(server.db)
            try:
                rows = conn.execute(
                    "SELECT group_key, count(*) FROM alerts WHERE group_key LIKE ?"
                    " GROUP BY group_key",
                    (f"bench:{run}:%",),
                ).fetchall()
            finally:
                conn.close()
            stored = {int(g.rsplit(":", 1)[1]): n for g, n in rows}
            missing = sorted(i for i in result.acked if stored.get(i) != 2)
            unexpected = sorted(i for i in stored if i not in result.acked)
        finally:
            server.stop()
            if attacker is not None and attacker._proc.is_alive():
                attacker._proc.kill()
    summary = result.summary()
    health_lat = sorted(t for ok, t in health)
    failed = result.sent - result.ok
    p99 = summary["latency_ms"].get("p99", float("inf"))
    return {
        "run": name,
        "worker_class": worker_class,
        "tls": tls,
        "slow_connections": slow,
        "mix": mix if slow else {},
        "rate": rate,
        "duration_s": duration,
        "deliveries": summary,
        "delivery_failures": failed,
        "missing_acknowledged": len(missing),
        "unexpected_in_store": len(unexpected),
        "health": {
            "probes": len(health),
            "failed": sum(1 for ok, _ in health if not ok),
            "p99_ms": round(
                health_lat[min(len(health_lat) - 1, int(len(health_lat) * 0.99))] * 1e3, 1
            )
            if health_lat
            else None,
            "max_ms": round(health_lat[-1] * 1e3, 1) if health_lat else None,
        },
        "attack": attack,
        "server_rss_mb_max": max(rss_samples) if rss_samples else None,
        "server_cpu_ms_per_delivery": round(cpu / max(1, result.sent) * 1000, 3),
        "cpu_pressure_after": cpu_pressure(),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "target_p99_ms": 100,
        "pass": p99 < 100 and failed == 0 and not missing and result.sent > 0,
    }


def table(rows: list[dict]) -> str:
    head = (
        "| run | hostile conns held (cut by server) | deliveries ok / sent | p50 | p99 | max "
        "| /-/healthy failed, p99 | lost | server RSS | target |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        d = r["deliveries"]
        lat = d["latency_ms"]
        a = r["attack"]
        held = (
            f"{a.get('held_open_mean', 0):.0f} of {r['slow_connections']} ({a.get('cut_by_server', 0)})"
            if r["slow_connections"]
            else "none"
        )
        h = r["health"]
        lines.append(
            f"| {r['run']} | {held} | {d['ok']:,} / {d['sent']:,} | {lat.get('p50', '-')} ms "
            f"| {lat.get('p99', '-')} ms | {lat.get('max', '-')} ms | {h['failed']} of "
            f"{h['probes']}, {h['p99_ms']} ms | {r['missing_acknowledged']} "
            f"| {r['server_rss_mb_max']} MB | {'met' if r['pass'] else 'MISSED'} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--runs",
        default="gevent,gevent-tls,gthread",
        help="comma-separated: gevent (shipped), gevent-tls, gevent-quiet (no attack), gthread "
        "(the old default, for comparison)",
    )
    ap.add_argument("--slow", type=int, default=1000, help="hostile connections (default 1000)")
    ap.add_argument("--rate", type=float, default=200, help="deliveries per second (default 200)")
    ap.add_argument("--duration", type=float, default=60, help="seconds of load per run")
    ap.add_argument(
        "--gthread-duration", type=float, default=20, help="seconds for the gthread comparison"
    )
    ap.add_argument(
        "--mix",
        default="headers=0.6,idle=0.2,body=0.2",
        help="share of each hostile kind (headers, idle, body)",
    )
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    mix = {k: float(v) for k, v in (p.split("=") for p in a.mix.split(","))}
    if set(mix) - set(KINDS):
        ap.error(f"--mix kinds are {', '.join(KINDS)}")
    rows = []
    for name in a.runs.split(","):
        worker = "gthread" if name.startswith("gthread") else "gevent"
        slow = 0 if name.endswith("quiet") else a.slow
        duration = a.gthread_duration if worker == "gthread" else a.duration
        print(f"run {name}: {worker}, {slow} hostile connections, {a.rate}/s for {duration}s")
        rows.append(
            run_one(
                name,
                worker_class=worker,
                slow=slow,
                rate=a.rate,
                duration=duration,
                mix=mix,
                tls=name.endswith("tls"),
            )
        )
        print(table(rows[-1:]))
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpus": os.cpu_count(),
        "target": "p99 < 100 ms and nothing lost, with --slow hostile connections",
        "runs": rows,
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(rows))
    print(f"\nwrote {a.out}")
    shipped = [r for r in rows if r["worker_class"] == "gevent"]
    return 0 if shipped and all(r["pass"] for r in shipped) else 1


if __name__ == "__main__":
    sys.exit(main())
