"""Faults for the webhook, as the lab injects them into CoreDNS: kill -9 of a gunicorn worker and
then of the master under load (`crash_check`, crash consistency), and hostile clients holding
slow connections (`HostileClients`: slowloris headers, idle sockets, dribbled bodies) in a
process of their own. Used by tests/webhook and by bench/webhook_crash.py, webhook_hostile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .deliveries import make_payload, run_load
from .webhook_server import alive, restart, start_server

# -- kill -9 under load ---------------------------------------------------------------------------


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
    """kill -9 a worker at `kill_worker_at` s and the master at `kill_master_at` s of a `rate`/s
    load, restart, then check the store (a report with "pass").

    Every delivery carries unique alerts. The deliveries that failed while the server was down
    are sent again after the run, as Alertmanager would retry them, and a sample of acknowledged
    ones too (a retry whose first response was lost). The store must then hold every
    acknowledged delivery's alerts exactly once, and nothing else.
    """
    kill_worker_at = duration / 3 if kill_worker_at is None else kill_worker_at
    kill_master_at = 2 * duration / 3 if kill_master_at is None else kill_master_at
    run = f"crash{int(time.time() * 1000)}"
    server = start_server(workdir, workers=workers, threads=threads)
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
        while any(alive(p) for p in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in orphans:  # still there after 30 s: not ours to wait for any longer
            if alive(p):
                os.kill(p, signal.SIGKILL)
        down = time.monotonic()
        state["server"] = restart(old)
        events["restart_s"] = round(time.monotonic() - down, 2)
        log(
            f"t={time.monotonic() - t0:5.1f}s restarted as {state['server'].pid} in {events['restart_s']}s"
        )

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    chaos_thread.start()
    try:
        result = run_load(
            f"{server.url}/webhook",
            rate=rate,
            duration=duration,
            payload=lambda i: make_payload(run, i, alerts),
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
        retry = run_load(
            f"{server.url}/webhook",
            rate=rate,
            duration=0,
            indices=retried + resent,
            payload=lambda i: make_payload(run, i, alerts),
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


# -- the hostile clients (their own process, one asyncio loop) -----------------------------------


@dataclass
class AttackSpec:
    port: int
    n: int
    mix: dict[str, float]
    interval: float
    duration: float
    tls: bool


def _attack_process(spec: AttackSpec, conn) -> None:
    try:
        stats = asyncio.run(_attack(spec, conn))
    except Exception as exc:  # report, never hang the parent
        stats = {"error": repr(exc)}
    conn.send(("done", stats))
    conn.close()


async def _attack(spec: AttackSpec, pipe) -> dict:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, spec.n * 2 + 256)), hard))
    ctx = None
    if spec.tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # Until the duration is over or the parent says "stop" (checked once a second below).
    stop_at = [time.monotonic() + spec.duration]
    stats = {
        "opened": 0,
        "cut_by_server": 0,
        "connect_errors": 0,
        "lifetimes": [],
        "open_now": 0,
        "max_open": 0,
    }
    counts = {k: round(spec.n * f) for k, f in spec.mix.items()}
    counts[next(iter(counts))] += spec.n - sum(counts.values())

    async def one(kind: str, i: int) -> None:
        await asyncio.sleep(i / 500)  # ramp up at 500 connections/s
        while time.monotonic() < stop_at[0]:
            started = time.monotonic()
            try:
                use_tls = ctx if (ctx is not None and kind != "idle") else None
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", spec.port, ssl=use_tls), 10
                )
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                stats["connect_errors"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            stats["open_now"] += 1
            stats["max_open"] = max(stats["max_open"], stats["open_now"])
            cut = False
            try:
                cut = await _misbehave(kind, reader, writer, spec, stop_at)
            finally:
                stats["open_now"] -= 1
                writer.transport.abort()
            if cut:
                stats["cut_by_server"] += 1
                stats["lifetimes"].append(time.monotonic() - started)

    tasks = [
        asyncio.create_task(one(kind, i))
        for i, kind in enumerate(k for k, c in counts.items() for _ in range(c))
    ]
    # Tell the parent when all connections are open (or after 10 s), then keep going.
    t0 = time.monotonic()
    while stats["open_now"] < spec.n * 0.98 and time.monotonic() - t0 < 10:
        await asyncio.sleep(0.05)
    pipe.send(("ready", stats["open_now"]))
    samples = []
    while time.monotonic() < stop_at[0]:
        await asyncio.sleep(1)
        samples.append(stats["open_now"])
        if pipe.poll():
            pipe.recv()
            stop_at[0] = time.monotonic()
    await asyncio.gather(*tasks, return_exceptions=True)
    life = sorted(stats.pop("lifetimes"))
    stats["held_open_mean"] = round(sum(samples) / len(samples), 1) if samples else 0
    stats["held_open_min"] = min(samples) if samples else 0
    stats["per_kind"] = counts
    stats["lifetime_s"] = (
        {
            "p50": round(life[len(life) // 2], 2),
            "p99": round(life[min(len(life) - 1, int(len(life) * 0.99))], 2),
            "max": round(life[-1], 2),
        }
        if life
        else {}
    )
    return stats


async def _misbehave(kind: str, reader, writer, spec: AttackSpec, stop_at: list[float]) -> bool:
    """Behave badly until the server closes (True) or the run ends (False)."""
    if kind == "headers":
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    elif kind == "body":
        writer.write(
            b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n{"
        )
    n = 0
    while time.monotonic() < stop_at[0]:
        try:
            await writer.drain()
            data = await asyncio.wait_for(reader.read(65536), spec.interval)
            if not data:
                return True  # EOF: the server cut us
            continue  # e.g. the 401 for "body": keep dribbling until it closes
        except asyncio.TimeoutError:
            pass
        except (OSError, ssl.SSLError):
            return True
        n += 1
        if kind == "headers":
            writer.write(b"X-Slow-%d: %d\r\n" % (n, random.randrange(1 << 30)))
        elif kind == "body":
            writer.write(b" ")
    return False


class HostileClients:
    """The attacker process as a context manager: ``with HostileClients(...) as h: ...``;
    ``h.opened`` is how many were open when it said ready, ``h.stats`` its report after exit."""

    def __init__(self, spec: AttackSpec, ready_timeout: float = 30) -> None:
        self.spec = spec
        self.ready_timeout = ready_timeout
        self.opened = 0
        self.stats: dict = {}

    def __enter__(self) -> HostileClients:
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe()
        self._proc = ctx.Process(target=_attack_process, args=(self.spec, child), daemon=True)
        self._proc.start()
        if self._pipe.poll(self.ready_timeout):
            kind, value = self._pipe.recv()
            if kind == "ready":
                self.opened = value
            else:
                self.stats = value
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._pipe.send("stop")
        deadline = time.monotonic() + self.spec.interval + 30
        while not self.stats and time.monotonic() < deadline and self._proc.is_alive():
            if self._pipe.poll(1):
                kind, value = self._pipe.recv()
                if kind == "done":
                    self.stats = value
        if not self.stats and self._pipe.poll(1):
            self.stats = self._pipe.recv()[1]
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
