"""The fault classes the lab injects, the benign events it must not alarm on, and schedules.

Each fault maps an intensity u in (0, 1] to concrete knobs, applies them to one instance,
and returns those knobs for the label. Faults act where they happen in a real cluster: the
upstream path (latency, SERVFAIL, loss), the clients (floods, attacks, cache thrash, large
answers), the pod's CPU limit (CFS quota, as Kubernetes sets it) and the Corefile (reload).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coredns_anomaly.contracts.names import FAULT_CLASSES

from .faultproxy import Impairment

if TYPE_CHECKING:
    from .lab import Instance

log = logging.getLogger(__name__)

BENIGN_EVENTS = ("restart", "reload", "rate_change", "burst")


def apply_fault(inst: Instance, cls: str, u: float) -> dict:
    """Start fault `cls` at intensity u on `inst`; returns the knobs used."""
    if cls == "upstream_latency":
        delay = round(0.04 + 0.46 * u, 3)
        inst.proxy.set(Impairment(delay_s=delay, jitter_s=delay * 0.2))
        return {"delay_ms": delay * 1000}
    if cls == "upstream_servfail":
        p = round(0.1 + 0.9 * u, 3)
        inst.proxy.set(Impairment(servfail=p))
        return {"servfail_fraction": p}
    if cls == "upstream_loss":
        p = round(0.1 + 0.9 * u, 3)
        inst.proxy.set(Impairment(drop=p))
        return {"drop_fraction": p}
    if cls == "query_flood":
        qps = int(min(6000, inst.normal_qps() * (2 + 8 * u)))
        inst.start_dnsperf("flood", qps)
        return {"extra_qps": qps}
    if cls == "random_subdomain":
        qps = int(40 + 760 * u)
        inst.start_dnsperf("attack", qps)
        return {"attack_qps": qps}
    if cls == "cache_thrash":
        # Unique existing names: with the cache plugin they churn its success cache; in an
        # environment without cache (env-nocache-rewrite) the same traffic is a flood of
        # never-repeating names that all go upstream (no cache metrics to move, the label
        # still marks the anomalous load).
        qps = int(150 + 850 * u)
        inst.start_dnsperf("thrash", qps)
        return {"unique_name_qps": qps}
    if cls == "cpu_starvation":
        share = inst.cpu.measure(inst.front_pid(), 2.0)
        quota = max(0.002, share * (0.85 - 0.75 * u))
        inst.cpu.limit(inst.front_pid(), quota)
        return {"normal_cpu_cores": round(share, 4), "quota_cores": round(quota, 4)}
    if cls == "tcp_fallback":
        rate = round(15 + 235 * u, 1)
        inst.traffic.extra_large_rate = rate
        return {"large_lookups_per_s": rate}
    if cls == "misconfig_refused":
        if u < 0.4:
            inst.config.acl_block_types = ("AAAA",)
        elif u < 0.75:
            inst.config.acl_block_types = ("A",)
        else:
            inst.config.acl_block_all = True
        inst.reload_front()
        return {"blocked": "all" if inst.config.acl_block_all else inst.config.acl_block_types[0]}
    raise ValueError(f"unknown fault class {cls!r}; known: {', '.join(FAULT_CLASSES)}")


def clear_fault(inst: Instance, cls: str) -> None:
    """Undo `cls`; safe to call for a fault that is not active."""
    if cls.startswith("upstream_"):
        inst.proxy.set(Impairment())
    elif cls in ("query_flood", "random_subdomain", "cache_thrash"):
        inst.stop_dnsperf()
    elif cls == "cpu_starvation":
        inst.cpu.release(inst.front_pid())
    elif cls == "tcp_fallback":
        inst.traffic.extra_large_rate = 0.0
    elif cls == "misconfig_refused":
        inst.config.acl_block_types = ()
        inst.config.acl_block_all = False
        inst.reload_front()


def apply_benign(inst: Instance, event: str, rng: random.Random) -> tuple[float, dict]:
    """Run a benign event; returns (duration actually taken, knobs)."""
    if event == "restart":
        t0 = time.time()
        inst.front.restart()
        return time.time() - t0, {}
    if event == "reload":
        t0 = time.time()
        inst.config.generation += 1
        inst.reload_front()
        return time.time() - t0, {"generation": inst.config.generation}
    if event == "rate_change":
        m = round(rng.uniform(0.6, 1.5), 2)
        inst.traffic.curve.multiplier = m
        return 1.0, {"multiplier": m}
    if event == "burst":
        old, m, dur = (
            inst.traffic.curve.multiplier,
            round(rng.uniform(1.5, 2.5), 2),
            rng.uniform(4, 16),
        )
        inst.traffic.curve.multiplier = old * m
        time.sleep(dur)
        inst.traffic.curve.multiplier = old
        return dur, {"multiplier": m}
    raise ValueError(f"unknown benign event {event!r}; known: {', '.join(BENIGN_EVENTS)}")


class CpuLimiter:
    """Limits one process's CPU like a Kubernetes CPU limit: a CFS quota in a cgroup.

    Where cgroup v1's cpu controller is not writable it falls back to SIGSTOP/SIGCONT duty
    cycling at the same share, which throttles the same way, only coarser.
    """

    period_us = 100_000

    def __init__(self, name: str, root: Path = Path("/sys/fs/cgroup/cpu")) -> None:
        self.root = root
        self.path = root / f"coredns-anomaly-lab-{os.getpid()}-{name}"
        self.mode = "none"
        self._duty: threading.Thread | None = None
        self._duty_stop = threading.Event()
        try:
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
            self.mode = "cgroup"
        except OSError:
            self.mode = "sigstop"

    @staticmethod
    def measure(pid: int, seconds: float) -> float:
        """CPU cores used by pid over `seconds` (utime+stime from /proc)."""

        def ticks() -> int:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])

        t0, c0 = time.monotonic(), ticks()
        time.sleep(seconds)
        return (ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)

    def limit(self, pid: int, cores: float) -> None:
        if self.mode == "cgroup":
            period, quota = self.period_us, int(cores * self.period_us)
            if quota < 1000:
                # Below the kernel's 1 ms minimum quota (a CoreDNS of a few lookups/s uses
                # < 0.01 cores): stretch the period instead, up to 1 s, so the share holds.
                period, quota = min(1_000_000, int(1000 / max(cores, 0.001))), 1000
            (self.path / "cpu.cfs_quota_us").write_text("-1")
            (self.path / "cpu.cfs_period_us").write_text(str(period))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            (self.path / "cgroup.procs").write_text(str(pid))
            return
        self._duty_stop.clear()
        self._duty = threading.Thread(target=self._duty_cycle, args=(pid, cores), daemon=True)
        self._duty.start()

    def release(self, pid: int | None) -> None:
        if self.mode == "cgroup":
            if pid:
                with contextlib.suppress(OSError):
                    (self.root / "cgroup.procs").write_text(str(pid))
            with contextlib.suppress(OSError):
                (self.path / "cpu.cfs_quota_us").write_text("-1")
                (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
        elif self._duty is not None:
            self._duty_stop.set()
            self._duty.join()
            self._duty = None

    def close(self) -> None:
        if self.mode == "cgroup":
            with contextlib.suppress(OSError):
                self.path.rmdir()

    def _duty_cycle(self, pid: int, cores: float) -> None:
        run = max(0.002, min(0.1, cores * 0.1))
        while not self._duty_stop.is_set():
            time.sleep(run)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            time.sleep(0.1 - run)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class Item:
    """One scheduled thing on one instance: an anomalous episode or a benign event."""

    instance: int
    kind: str  # fault class or benign event name
    at: float  # seconds after the run starts
    duration: float
    intensity: float
    anomaly: bool


def build_schedule(
    n_instances: int,
    classes: tuple[str, ...] = FAULT_CLASSES,
    episodes_per_class: int = 8,
    seed: int = 0,
    warmup: float = 60.0,
    gap: tuple[float, float] = (40.0, 90.0),
    duration: tuple[float, float] = (30.0, 80.0),
    benign_probability: float = 0.6,
) -> list[Item]:
    """Spread episodes of every class over the fleet, each at a different intensity.

    Intensities of one class are evenly spread over (0, 1] then shuffled, so every class is
    seen from barely-there to severe. Benign events fall only inside anomaly-free gaps.
    """
    rng = random.Random(seed)
    episodes = []
    for cls in classes:
        levels = [round((k + 1) / episodes_per_class, 3) for k in range(episodes_per_class)]
        rng.shuffle(levels)
        episodes += [(cls, u) for u in levels]
    rng.shuffle(episodes)
    items: list[Item] = []
    clock = [warmup] * n_instances
    for k, (cls, u) in enumerate(episodes):
        i = k % n_instances
        g = rng.uniform(*gap)
        if rng.random() < benign_probability and g >= 30:
            ev = rng.choice(BENIGN_EVENTS)
            items.append(Item(i, ev, clock[i] + rng.uniform(8, g - 22), 0.0, 0.0, False))
        start = clock[i] + g
        d = rng.uniform(*duration)
        items.append(Item(i, cls, start, d, u, True))
        clock[i] = start + d
    for i in range(n_instances):  # end every instance on a clean stretch
        items.append(Item(i, "end", clock[i] + rng.uniform(*gap), 0.0, 0.0, False))
    return sorted(items, key=lambda it: (it.at, it.instance))


def build_healthy_schedule(
    n_instances: int,
    seed: int,
    warmup: float,
    gap: tuple[float, float],
    minutes: float,
) -> list[Item]:
    """A healthy soak: no faults, only benign events (restarts, reloads, rate changes,
    bursts) every `gap` seconds per instance after `warmup`, until `minutes` have passed.

    Why: the recordings with faults hold one every 10-20 minutes per instance, so most of
    their healthy time is a fault's aftermath; a cluster's day is mostly not. This measures
    the false-alarm rate of the day itself.
    """
    rng = random.Random(seed)
    end = minutes * 60
    items: list[Item] = []
    for i in range(n_instances):
        at = warmup + rng.uniform(*gap)
        while at < end - 60:
            items.append(Item(i, rng.choice(BENIGN_EVENTS), at, 0.0, 0.0, False))
            at += rng.uniform(*gap)
        items.append(Item(i, "end", end, 0.0, 0.0, False))
    return sorted(items, key=lambda it: (it.at, it.instance))
