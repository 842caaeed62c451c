"""50 healthy CoreDNS targets beside 10 hostile ones, scraped by the real exporter CLI (issue 13).

    .venv/bin/python bench/hostile_targets.py [--steps 15] [--rounds 3] [--healthy 50] \
        [--out bench/results/hostile_targets.json]

Runs of `coredns-anomaly exporter` (a real process, default flags but --state-file ''), each
for `--steps` model steps after the windows fill, `--rounds` of each kind, interleaved (the host
is shared, so its load drifts; interleaving spreads the drift over both kinds):
1. the 50 healthy targets alone: real CoreDNS pages recorded in bench/pages, served over
   loopback HTTP with counters advancing by the recorded deltas (one page per request);
2. the same 50 beside 10 hostile targets (tests/exporter/exporter_testlib.HostileServer):
   headers sent one byte a second (2), a body sent one byte a second (2), a page with lines of
   24 blank-separated labels (the input that made the old parser backtrack), a 450k-series page
   just under the 20 MB size cap, a chain of slow redirects, a redirect to another host, and
   two flapping targets (a page, then a hang-up, in turns of 1 and 3 requests).
Healthy and hostile targets are served by two child processes of their own. Meanwhile a client
reads the exporter's /metrics 20 times a second (latency, and which healthy targets carry a
score after each step) and /proc gives the exporter's resident memory and CPU time.

Targets (docs/exporter.md "Hostile targets"): every healthy target scored every step; median
step time with the hostile ones <= 1.2x without; /metrics p99 < 50 ms; RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "exporter"))
from exporter_testlib import (  # noqa: E402  (the suite's page servers, reused as is)
    HostileServer,
    PageServer,
    Timeline,
    huge_page,
    redos_page,
)

EXE = str(ROOT / ".venv" / "bin" / "coredns-anomaly")
_SAMPLE = re.compile(r"^(coredns_anomaly_\w+)(?:\{([^}]*)\})? (\S+)$", re.M)
_INSTANCE = re.compile(r'instance="([^"]+)"')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Healthy:
    """n page servers, each serving the recorded timeline, one page further per request."""

    def __init__(self, n: int, pages: int) -> None:
        tl = Timeline("normal")
        self.pages = [tl.page(i).encode() for i in range(pages)]
        self.servers = [PageServer() for _ in range(n)]
        for srv in self.servers:
            count = [0]

            def route(count=count):
                page = self.pages[min(count[0], len(self.pages) - 1)]
                count[0] += 1
                return 200, "text/plain; version=0.0.4", page, 0.0

            srv.routes["/metrics"] = route

    def instances(self) -> list[str]:
        return [s.instance() for s in self.servers]

    def close(self) -> None:
        for s in self.servers:
            s.close()


def hostile_targets() -> list[tuple[str, HostileServer]]:
    """The 10 hostile targets, with what each does."""
    redos, huge = redos_page(), huge_page()
    elsewhere = HostileServer("page", page=lambda: redos)  # only reachable by a redirect
    out = [
        ("slow headers (1 byte/s)", HostileServer("slow_headers", interval=1.0, hold=60)),
        ("slow headers (1 byte/s)", HostileServer("slow_headers", interval=1.0, hold=60)),
        ("dribbled body (1 byte/s)", HostileServer("dribble", interval=1.0, hold=60)),
        ("dribbled body (1 byte/s)", HostileServer("dribble", interval=1.0, hold=60)),
        ("ReDoS lines (24 labels)", HostileServer("page", page=lambda: redos)),
        (
            f"huge page ({len(huge) / 2**20:.1f} MB, 450k series)",
            HostileServer("page", page=lambda: huge),
        ),  # fmt: skip
        ("redirect chain (0.3 s a hop)", HostileServer("redirect_loop", hop_delay=0.3)),
        (
            "redirect to another host",
            HostileServer("redirect_to", location=f"http://localhost:{elsewhere.port}/metrics"),
        ),  # fmt: skip
        ("flapping (every request)", HostileServer("flapping", page=_healthy_page, flap_every=1)),
        (
            "flapping (every 3 requests)",
            HostileServer("flapping", page=_healthy_page, flap_every=3),
        ),  # fmt: skip
    ]
    return out + [("", elsewhere)]


_TL: list = []


def _healthy_page() -> bytes:
    if not _TL:
        _TL.extend([Timeline("normal"), 0])
    _TL[1] += 1
    return _TL[0].page(_TL[1] % 5).encode()  # a few recorded pages; flapping resets anyway


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {ln.split(":")[0]: ln.split()[1] for ln in status.splitlines() if ln.startswith("Vm")}
    return int(kb["VmRSS"]) / 1024, int(kb["VmHWM"]) / 1024


def run(instances: list[str], healthy: list[str], steps: int, window: int) -> dict:
    """One exporter process over `instances`; measured until `steps` steps after the window."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        sd = Path(tmp) / "targets.json"
        sd.write_text(json.dumps([{"targets": instances}]))
        proc = subprocess.Popen(
            [EXE, "exporter", "--model", str(ROOT / "models/default"), "--targets-file", str(sd),
             "--listen", f"127.0.0.1:{port}", "--state-file", "", "--log-level", "warning"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            return _measure(proc, port, set(healthy), steps, window)
        finally:
            proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stop_seconds = time.monotonic() - t0
            log = proc.stderr.read()
            print(f"  exporter stopped {stop_seconds:.2f} s after SIGTERM; {len(log.splitlines())} log lines")  # fmt: skip


def _measure(proc, port: int, healthy: set[str], steps: int, window: int) -> dict:
    url = f"http://127.0.0.1:{port}/metrics"
    session = requests.Session()
    latencies, step_rows, rss, peak = [], [], [], 0.0
    last_step, last_rss, end = -1.0, 0.0, time.monotonic() + 60 + (window + steps + 5) * 2.5
    text = ""
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
        t0 = time.perf_counter()
        try:
            r = session.get(url, timeout=5)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        latency = time.perf_counter() - t0
        text = r.text
        got = {}
        for name, _labels, value in _SAMPLE.findall(text):
            if name in ("coredns_anomaly_steps_total", "coredns_anomaly_step_duration_seconds"):
                got[name] = float(value)
        n = got.get("coredns_anomaly_steps_total", 0.0)
        if n >= 1:
            latencies.append(latency)
        if n != last_step and n >= 1:
            last_step = n
            scored = set()
            up = set()
            for name, labels, value in _SAMPLE.findall(text):
                m = _INSTANCE.search(labels or "")
                if m and name == "coredns_anomaly_score":
                    scored.add(m.group(1))
                if m and name == "coredns_anomaly_target_up" and float(value) == 1.0:
                    up.add(m.group(1))
            step_rows.append(
                {
                    "cpu": cpu_seconds(proc.pid),
                    "step": int(n),
                    "duration": got["coredns_anomaly_step_duration_seconds"],
                    "healthy_scored": len(healthy & scored),
                    "healthy_up": len(healthy & up),
                }
            )
            if n >= window + steps:
                break
        if time.monotonic() - last_rss > 1.0:
            now, peak = rss_mb(proc.pid)
            rss.append(now)
            last_rss = time.monotonic()
        time.sleep(0.05)
    errors: dict[str, dict[str, float]] = {}
    for name, labels, value in _SAMPLE.findall(text):
        if name == "coredns_anomaly_target_errors_total":
            lab = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            errors.setdefault(lab["instance"], {})[lab["reason"]] = float(value)
    scored_rows = [r for r in step_rows if r["step"] > window]  # windows full from here on
    cpu = [r["cpu"] for r in scored_rows]
    return {
        "steps_scored_checked": len(scored_rows),
        "steps_all_healthy_scored": sum(r["healthy_scored"] == len(healthy) for r in scored_rows),
        "durations": [r["duration"] for r in scored_rows],
        "first_steps_seconds": [r["duration"] for r in step_rows[:3]],
        "cpu_seconds_per_step": (cpu[-1] - cpu[0]) / (len(cpu) - 1) if len(cpu) > 1 else None,
        "latencies_ms": [x * 1000 for x in latencies],
        "rss_mb_last": rss[-1] if rss else None,
        "rss_mb_peak": peak,
        "load_average": os.getloadavg()[0],
        "errors": errors,
    }


def summary(runs: list[dict]) -> dict:
    """Several runs of one kind (interleaved with the other kind) as one set of figures."""
    durations = sorted(d for r in runs for d in r["durations"])
    lat = sorted(x for r in runs for x in r["latencies_ms"])
    cpu = [r["cpu_seconds_per_step"] for r in runs if r["cpu_seconds_per_step"] is not None]
    return {
        "runs": len(runs),
        "steps_scored_checked": sum(r["steps_scored_checked"] for r in runs),
        "steps_all_healthy_scored": sum(r["steps_all_healthy_scored"] for r in runs),
        "step_seconds_median": statistics.median(durations),
        "step_seconds_mean": statistics.fmean(durations),
        "step_seconds_p90": _pct(durations, 0.90),
        "step_seconds_max": durations[-1],
        "first_steps_seconds": runs[0]["first_steps_seconds"],
        "cpu_seconds_per_step": statistics.fmean(cpu) if cpu else None,
        "metrics_requests": len(lat),
        "metrics_latency_ms_p50": _pct(lat, 0.50),
        "metrics_latency_ms_p99": _pct(lat, 0.99),
        "metrics_latency_ms_max": lat[-1],
        "rss_mb_last": runs[-1]["rss_mb_last"],
        "rss_mb_peak": max(r["rss_mb_peak"] for r in runs),
        "host_load_average_1m": [round(r["load_average"], 2) for r in runs],
        "errors": runs[-1]["errors"],
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def serve_targets(kind: str, n: int, pages: int) -> int:
    """Child mode: start the targets of one kind, print their addresses as one JSON line, serve
    until stdin closes. Healthy and hostile targets live in separate processes, so the work of
    serving the hostile ones (a 17.5 MB page a step) does not slow the healthy ones' answers."""
    if kind == "healthy":
        farm = Healthy(n, pages)
        print(json.dumps([["", i] for i in farm.instances()]), flush=True)
        sys.stdin.read()
        farm.close()
    else:
        hostile = hostile_targets()
        print(json.dumps([[w, h.instance()] for w, h in hostile if w]), flush=True)
        sys.stdin.read()
        for _, h in hostile:
            h.close()
    return 0


def start_farm(kind: str, n: int, pages: int) -> tuple[subprocess.Popen, list[list[str]]]:
    farm = subprocess.Popen(
        [sys.executable, __file__, "--healthy", str(n), "--serve-targets", kind, "--pages", str(pages)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = farm.stdout.readline()
    if not line:
        raise RuntimeError(f"the {kind} target process did not start")
    return farm, json.loads(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=15, help="measured steps per run, after the window fills")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3, help="runs of each kind, interleaved")
    ap.add_argument("--healthy", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench/results/hostile_targets.json"))
    ap.add_argument("--serve-targets", choices=["healthy", "hostile"], help=argparse.SUPPRESS)
    ap.add_argument("--pages", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_targets:  # child mode
        return serve_targets(args.serve_targets, args.healthy, args.pages)
    from coredns_anomaly.exporter.bundle import load_bundle

    window = load_bundle(ROOT / "models/default").window
    pages = 2 * args.rounds * (window + args.steps + 30)
    print(f"{args.healthy} healthy targets ({pages} pages each) and 10 hostile ones; {args.rounds} rounds of {args.steps} steps")  # fmt: skip
    farms = []
    try:
        farm, got = start_farm("healthy", args.healthy, pages)
        farms.append(farm)
        healthy = [inst for _, inst in got]
        farm, got = start_farm("hostile", 0, 0)
        farms.append(farm)
        kinds = {inst: what for what, inst in got}
        runs: dict[str, list[dict]] = {"alone": [], "mixed": []}
        for k in range(args.rounds):
            print(f"round {k + 1}: healthy targets only")
            runs["alone"].append(run(healthy, healthy, args.steps, window))
            print(f"round {k + 1}: healthy + hostile targets")
            runs["mixed"].append(run(healthy + list(kinds), healthy, args.steps, window))
    finally:
        for farm in farms:
            farm.stdin.close()
            farm.wait(timeout=30)
    alone, mixed = summary(runs["alone"]), summary(runs["mixed"])
    for inst, what in kinds.items():
        mixed.setdefault("hostile", []).append({"target": what, "instance": inst, "errors": mixed["errors"].get(inst, {})})  # fmt: skip
    mixed["errors"] = {k: v for k, v in mixed["errors"].items() if k not in kinds}
    ratio = mixed["step_seconds_median"] / alone["step_seconds_median"]
    checks = {
        "every healthy target scored every step": (
            mixed["steps_all_healthy_scored"] == mixed["steps_scored_checked"] > 0
        ),
        "median step time with hostile <= 1.2x without": ratio <= 1.2,
        "/metrics p99 < 50 ms": mixed["metrics_latency_ms_p99"] < 50,
        "exporter RSS < 150 MB": mixed["rss_mb_peak"] < 150,
    }
    result = {
        "what": "50 healthy CoreDNS targets (recorded pages over loopback HTTP) beside 10 hostile ones, scraped by the real `coredns-anomaly exporter` process (default flags)",  # fmt: skip
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "steps_measured": args.steps * args.rounds,
        "rounds": args.rounds,
        "window": window,
        "healthy_only": alone,
        "with_hostile": mixed,
        "step_time_ratio_median": ratio,
        "step_time_ratio_mean": mixed["step_seconds_mean"] / alone["step_seconds_mean"],
        "cpu_per_step_ratio": mixed["cpu_seconds_per_step"] / alone["cpu_seconds_per_step"],
        "targets_met": checks,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"wrote {args.out}")
    return 0


def print_table(r: dict) -> None:
    a, m, c = r["healthy_only"], r["with_hostile"], r["targets_met"]
    rows = [
        ("healthy scored every step (after the window)", "all",
         f"{a['steps_all_healthy_scored']}/{a['steps_scored_checked']}", f"{m['steps_all_healthy_scored']}/{m['steps_scored_checked']}",
         c["every healthy target scored every step"]),
        ("step time median / mean / p90 / max (ms)", "<= 1.2x",
         "/".join(f"{a[k] * 1000:.0f}" for k in ("step_seconds_median", "step_seconds_mean", "step_seconds_p90", "step_seconds_max")),
         "/".join(f"{m[k] * 1000:.0f}" for k in ("step_seconds_median", "step_seconds_mean", "step_seconds_p90", "step_seconds_max"))
         + f" ({r['step_time_ratio_median']:.2f}x)", c["median step time with hostile <= 1.2x without"]),
        ("first 3 steps (ms)", "", "/".join(f"{x * 1000:.0f}" for x in a["first_steps_seconds"]),
         "/".join(f"{x * 1000:.0f}" for x in m["first_steps_seconds"]), None),
        ("/metrics latency p50 / p99 / max (ms)", "p99 < 50",
         f"{a['metrics_latency_ms_p50']:.1f} / {a['metrics_latency_ms_p99']:.1f} / {a['metrics_latency_ms_max']:.1f}",
         f"{m['metrics_latency_ms_p50']:.1f} / {m['metrics_latency_ms_p99']:.1f} / {m['metrics_latency_ms_max']:.1f}",
         c["/metrics p99 < 50 ms"]),
        ("exporter CPU per step (ms)", "", f"{a['cpu_seconds_per_step'] * 1000:.0f}",
         f"{m['cpu_seconds_per_step'] * 1000:.0f} ({r['cpu_per_step_ratio']:.2f}x)", None),
        ("host load average (1 min) per run", "", " ".join(f"{x:.1f}" for x in a["host_load_average_1m"]),
         " ".join(f"{x:.1f}" for x in m["host_load_average_1m"]), None),
        ("exporter RSS last / peak (MB)", "< 150", f"{a['rss_mb_last']:.0f} / {a['rss_mb_peak']:.0f}",
         f"{m['rss_mb_last']:.0f} / {m['rss_mb_peak']:.0f}", c["exporter RSS < 150 MB"]),
    ]  # fmt: skip
    w = [46, 9, 22, 30]
    print(f"{'':{w[0]}} {'target':{w[1]}} {'healthy only':{w[2]}} {'with 10 hostile':{w[3]}} met")
    for name, target, x, y, ok in rows:
        print(f"{name:{w[0]}} {target:{w[1]}} {x:{w[2]}} {y:{w[3]}} {'' if ok is None else 'yes' if ok else 'NO'}")  # fmt: skip
    print("\nhostile target                          counted errors (last run)")
    for h in m["hostile"]:
        print(f"  {h['target']:38s} {', '.join(f'{k} {v:.0f}' for k, v in sorted(h['errors'].items())) or 'none'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
