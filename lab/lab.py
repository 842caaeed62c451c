"""The lab: a small fleet of real CoreDNS servers under cluster traffic, faults on a schedule,
metrics sampled on a fixed step, written as a labelled dataset.

Read top to bottom: Instance (one CoreDNS and everything aimed at it), Lab (the fleet, the
shared upstream, traffic and sampler), Lab.record (play a schedule, keep samples and labels).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import random
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from coredns_anomaly.training import dataset as ds_mod

from . import catalog as cat_mod
from . import faults, processes, traffic
from .coredns import CoreDNSServer, FrontConfig, coredns_version, upstream_corefile, write_zones
from .faultproxy import FaultProxy
from .sampler import Sampler

log = logging.getLogger(__name__)


@dataclass
class LabSettings:
    instances: int = 1
    step: float = 2.0
    seed: int = 0
    base_rates: tuple[float, ...] = (150.0,)  # lookups/s per instance (cycled)
    workdir: Path | None = None
    # Environment knobs; the defaults are the shipped datasets' environment.
    cache: bool = True
    rewrite: bool = False
    autopath: bool = False
    mix: traffic.QueryMix = field(default_factory=traffic.QueryMix)
    coredns_bin: str | None = None  # the fronts' CoreDNS (None: the pinned one)


@dataclass
class Instance:
    """One cluster CoreDNS and the things pointed at it: its upstream path, traffic, limits."""

    name: str
    front: CoreDNSServer
    config: FrontConfig
    proxy: FaultProxy
    traffic: traffic.TargetTraffic
    cpu: faults.CpuLimiter
    zone_dir: Path
    query_files: dict[str, Path] = field(default_factory=dict)
    dnsperf: subprocess.Popen | None = None
    dnsperf_bin: str = "dnsperf"

    def front_pid(self) -> int:
        return self.front.proc.pid if self.front.proc else 0

    def normal_qps(self) -> float:
        """Queries/s the front gets from normal traffic now (lookups x queries per lookup)."""
        curve = self.traffic.curve
        return curve.base * curve.multiplier * 3.5

    def reload_front(self) -> float:
        upstream = f"127.0.0.1:{self.proxy.listen[1]}"
        return self.front.reload(self.config.render(self.front.ports, self.zone_dir, upstream))

    def start_dnsperf(self, kind: str, qps: int) -> None:
        self.stop_dnsperf()
        self.dnsperf = processes.spawn(
            [
                self.dnsperf_bin, "-s", "127.0.0.1", "-p", str(self.front.ports["dns"]),
                "-d", str(self.query_files[kind]), "-Q", str(qps), "-l", "3600",
                "-c", "4", "-q", "2000", "-t", "2",
            ],
            log_path=self.front.workdir / f"dnsperf-{kind}.log",
        )  # fmt: skip

    def stop_dnsperf(self) -> None:
        if self.dnsperf is not None:
            processes.stop(self.dnsperf)
            self.dnsperf = None


def write_query_files(
    workdir: Path, cat: cat_mod.Catalog, seed: int, mix: traffic.QueryMix | None = None
) -> dict[str, Path]:
    """dnsperf inputs: a flood of ordinary lookups, a random-subdomain attack, cache thrash."""
    rng = random.Random(seed)
    model = traffic.LookupModel(cat, seed, mix)
    files = {}
    lines = []
    while len(lines) < 20000:
        lk = model.draw()
        for cand in lk.candidates():
            lines.extend(f"{cand} {q}" for q in lk.qtypes)
    files["flood"] = lines
    files["attack"] = [
        f"{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz0123456789', k=12))}.{cat_mod.ATTACK_DOMAIN}. A"
        for _ in range(60000)
    ]
    files["thrash"] = [
        f"u{rng.getrandbits(40):x}.{cat_mod.THRASH_WILDCARD}. A" for _ in range(120000)
    ]
    out = {}
    for kind, body in files.items():
        path = workdir / f"queries-{kind}.txt"
        path.write_text("\n".join(body) + "\n")
        out[kind] = path
    return out


class Lab(processes.Lifecycle):
    """Starts the shared upstream and N instances; a context manager that always cleans up."""

    def __init__(self, settings: LabSettings) -> None:
        self.s = settings
        # The upstream ("the internet") always runs the pinned CoreDNS; the fronts may run
        # another release (an environment's), given as a path.
        self.upstream_bin = processes.find_binary("coredns", "COREDNS_BIN")
        self.coredns_bin = (
            str(Path(settings.coredns_bin).resolve()) if settings.coredns_bin else self.upstream_bin
        )
        self.dnsperf_bin = processes.find_binary("dnsperf", "DNSPERF_BIN")
        self._own_workdir = settings.workdir is None
        self.workdir = Path(
            settings.workdir or tempfile.mkdtemp(prefix="coredns-anomaly-lab-")
        ).resolve()
        self.catalog = cat_mod.build_catalog(seed=7)
        self.instances: list[Instance] = []
        self.upstream: CoreDNSServer | None = None
        self.generator: traffic.TrafficGenerator | None = None
        self.sampler: Sampler | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        zone_dir = self.workdir / "zones"
        write_zones(zone_dir, self.catalog)
        up_port, up_metrics = processes.free_port(), processes.free_port()
        self.upstream = CoreDNSServer(
            "upstream", self.workdir / "upstream", self.upstream_bin,
            upstream_corefile(up_port, up_metrics, zone_dir),
            ports={"dns": up_port, "metrics": up_metrics},
        )  # fmt: skip
        self.upstream.start()
        for i in range(self.s.instances):
            self.instances.append(self._start_instance(i, zone_dir, up_port))
        self.generator = traffic.TrafficGenerator([inst.traffic for inst in self.instances])
        self.generator.start()
        self.sampler = Sampler(
            {inst.name: inst.front.metrics_url for inst in self.instances}, self.s.step
        )
        self.sampler.extra.append(self._client_samples)
        log.info(
            "lab up: %d CoreDNS %s instance(s) in %s", len(self.instances),
            coredns_version(self.coredns_bin), self.workdir,
        )  # fmt: skip

    def _start_instance(self, i: int, zone_dir: Path, up_port: int) -> Instance:
        name = f"coredns-{i}"
        proxy = FaultProxy(processes.free_port(), ("127.0.0.1", up_port), seed=self.s.seed + i)
        proxy.start()
        ports = {k: processes.free_port() for k in ("dns", "metrics", "health", "ready")}
        config = FrontConfig(cache=self.s.cache, rewrite=self.s.rewrite, autopath=self.s.autopath)
        wd = self.workdir / name
        front = CoreDNSServer(
            name, wd, self.coredns_bin,
            config.render(ports, zone_dir, f"127.0.0.1:{proxy.listen[1]}"), ports=ports,
        )  # fmt: skip
        front.start()
        rate = self.s.base_rates[i % len(self.s.base_rates)]
        tt = traffic.TargetTraffic(
            server=("127.0.0.1", ports["dns"]),
            curve=traffic.RateCurve(base=rate, seed=self.s.seed * 100 + i),
            model=traffic.LookupModel(self.catalog, seed=self.s.seed * 100 + i, mix=self.s.mix),
        )
        inst = Instance(
            name, front, config, proxy, tt, faults.CpuLimiter(name), zone_dir,
            query_files=write_query_files(wd, self.catalog, self.s.seed * 100 + i, self.s.mix),
            dnsperf_bin=self.dnsperf_bin,
        )  # fmt: skip
        return inst

    def _client_samples(self, instance: str) -> list[tuple[str, str, float]]:
        """What the clients saw (sent, answers by rcode, timeouts, TCP retries): ground truth
        beside the server's own metrics, kept under a `lab_` prefix."""
        inst = next(x for x in self.instances if x.name == instance)
        return [
            ("lab_client_queries_total", f'outcome="{k}"', float(v))
            for k, v in sorted(inst.traffic.stats.items())
        ]

    def close(self) -> None:
        if self.sampler:
            self.sampler.close()
        if self.generator:
            self.generator.stop()
        for inst in self.instances:
            inst.stop_dnsperf()
            inst.cpu.release(inst.front_pid())
            inst.cpu.close()
            inst.front.stop()
            inst.proxy.stop()
        if self.upstream:
            self.upstream.stop()
        processes.stop_all()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- recording -------------------------------------------------------------
    def record(self, schedule: list[faults.Item], extra_meta: dict | None = None) -> ds_mod.Dataset:
        """Play `schedule` while sampling every step; returns the labelled dataset."""
        end_at = max((it.at + it.duration for it in schedule), default=0.0)
        labels: list[dict] = []
        lock = threading.Lock()
        t0_wall, t0 = time.time(), time.monotonic()
        stop = threading.Event()
        errors: list[str] = []

        def play(i: int) -> None:
            rng = random.Random(self.s.seed * 7919 + i)
            inst = self.instances[i]
            for it in (x for x in schedule if x.instance == i and x.kind != "end"):
                if stop.wait(max(0.0, t0 + it.at - time.monotonic())):
                    return
                try:
                    row = self._play_item(inst, it, rng, t0, stop)
                except Exception as exc:  # one failed item is logged and skipped, not fatal
                    log.warning("%s: %s at %.0fs failed: %s", inst.name, it.kind, it.at, exc)
                    with lock:
                        errors.append(f"{inst.name} {it.kind}@{it.at:.0f}s: {exc}")
                    with contextlib.suppress(Exception):
                        faults.clear_fault(inst, it.kind) if it.anomaly else None
                    continue
                if row:
                    with lock:
                        labels.append(row)

        threads = [
            threading.Thread(target=play, args=(i,), daemon=True)
            for i in range(len(self.instances))
        ]
        for th in threads:
            th.start()
        next_scrape, last_report = t0, t0
        try:
            while time.monotonic() - t0 < end_at and not stop.is_set():
                self.sampler.scrape_all()
                next_scrape += self.s.step
                now = time.monotonic()
                if now - last_report >= 30:
                    last_report = now
                    with lock:
                        done = sum(1 for r in labels if r["anomaly"])
                    total = sum(1 for it in schedule if it.anomaly)
                    sent = sum(x.traffic.stats["sent"] for x in self.instances)
                    log.info(
                        "lab: %4.0f/%.0fs, episodes %d/%d, client queries %d (%.0f/s)",
                        now - t0, end_at, done, total, sent, sent / (now - t0),
                    )  # fmt: skip
                time.sleep(max(0.0, next_scrape - time.monotonic()))
        finally:
            stop.set()
            for th in threads:
                th.join(120)
        if len(errors) > max(3, len(schedule) // 10):
            raise RuntimeError(f"lab run failed: {len(errors)} items failed, first: {errors[0]}")
        samples = self.sampler.recorder.frame()
        labels_df = (
            pd.DataFrame(labels, columns=list(ds_mod.LABEL_COLUMNS))
            if labels
            else ds_mod.empty_labels()
        )
        meta = self._meta(t0_wall, time.time(), schedule)
        meta["failed_items"] = errors
        meta.update(extra_meta or {})
        return ds_mod.Dataset(samples=samples, labels=labels_df, meta=meta)

    def _play_item(
        self, inst: Instance, it: faults.Item, rng: random.Random, t0: float, stop
    ) -> dict | None:
        if not it.anomaly:
            start = time.time()
            took, params = faults.apply_benign(inst, it.kind, rng)
            return self._label(inst, it, start, start + max(took, 0.5), params)
        params = faults.apply_fault(inst, it.kind, it.intensity)
        start = time.time()
        stop.wait(max(0.0, t0 + it.at + it.duration - time.monotonic()))
        faults.clear_fault(inst, it.kind)
        return self._label(inst, it, start, time.time(), params)

    @staticmethod
    def _label(inst: Instance, it: faults.Item, start: float, end: float, params: dict) -> dict:
        return {
            "instance": inst.name, "class": it.kind, "start": round(start, 3), "end": round(end, 3),
            "intensity": it.intensity, "anomaly": it.anomaly, "params": json.dumps(params, sort_keys=True),
            "source": "lab",
        }  # fmt: skip

    def _meta(self, start: float, end: float, schedule: list[faults.Item]) -> dict:
        dnsperf_v = subprocess.run([self.dnsperf_bin, "-h"], capture_output=True, text=True)
        dnsperf_line = next(
            (
                ln
                for ln in (dnsperf_v.stdout + dnsperf_v.stderr).splitlines()
                if "DNS Performance" in ln
            ),
            "",
        )
        return {
            "source": "lab",
            "coredns_version": coredns_version(self.coredns_bin),
            "step_seconds": self.s.step,
            "seed": self.s.seed,
            "instances": {inst.name: {"metrics_url": inst.front.metrics_url, "base_lookups_per_s": inst.traffic.curve.base} for inst in self.instances},
            "traffic_profile": {
                "lookup_mix": traffic.LOOKUP_MIX, "ndots": self.s.mix.ndots,
                "search_path": traffic.search_path("<ns>", length=self.s.mix.search),
                "query_mix": self.s.mix.describe(),
                "rate_curve": {"swing": 0.25, "period_s": 900, "noise": 0.08},
                "catalog": {"services": len(self.catalog.services), "external_names": len(self.catalog.external_names)},
            },
            "front_plugins": FrontConfig(cache=self.s.cache, rewrite=self.s.rewrite, autopath=self.s.autopath).plugins(),
            "upstream_coredns_version": coredns_version(self.upstream_bin),
            "cpu_limiter": self.instances[0].cpu.mode if self.instances else "none",
            "host": {"hostname": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "tools": {"dnsperf": dnsperf_line.strip()},
            "recorded_from": start, "recorded_to": end, "wall_seconds": round(end - start, 1),
            "schedule_items": len(schedule),
            "metric_types": dict(sorted(self.sampler.recorder.types.items())),
        }  # fmt: skip
