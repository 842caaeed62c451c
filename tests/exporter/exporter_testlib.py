"""Helpers for the exporter suite: real CoreDNS pages replayed on a timeline, a tiny page
server standing in for a misbehaving CoreDNS, and readers for the exporter's /metrics."""

from __future__ import annotations

import gzip
import math
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
PAGES_DIR = ROOT / "bench" / "pages"
MODEL_DIR = ROOT / "models" / "default"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
SCENARIOS = ("normal", "upstream_latency", "random_subdomain", "upstream_servfail")
# Families whose value only grows (counters and the parts of histograms/summaries).
_COUNTER = re.compile(r"(_total|_count|_sum|_bucket)$")
_SAMPLE = re.compile(r"^(?P<key>(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^\n]*\})?) (?P<value>\S+)$")


def load_pages(scenario: str) -> list[str]:
    """The real CoreDNS 1.15.0 pages of one scenario, in scrape order (2 s apart)."""
    paths = sorted(PAGES_DIR.glob(f"coredns-{scenario}-*.prom.gz"))
    assert paths, f"no recorded pages for {scenario} in {PAGES_DIR}"
    return [gzip.decompress(p.read_bytes()).decode() for p in paths]


def fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v)) if v != int(v) or abs(v) >= 1e15 else str(int(v))


def samples_of(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line of a real page (CoreDNS writes no timestamps)."""
    out = {}
    for line in text.split("\n"):
        m = _SAMPLE.match(line)
        if m and line[0] != "#":
            out[m.group("key")] = float(m.group("value"))
    return out


def rewrite(text: str, value_of: Callable[[str, str, float], float | None]) -> str:
    """The page with each sample's value replaced by value_of(key, name, value) (None drops it)."""
    out = []
    for line in text.split("\n"):
        m = _SAMPLE.match(line) if line and line[0] != "#" else None
        if m is None:
            out.append(line)
            continue
        v = value_of(m.group("key"), m.group("name"), float(m.group("value")))
        if v is not None:
            out.append(f"{m.group('key')} {fmt(v)}")
    return "\n".join(out)


class Timeline:
    """An endless run of a scenario's real pages: counters keep growing by the real one-step
    deltas of the recording (cycled), gauges take the recorded values. `restart(at)` re-bases
    every counter to zero at step `at` and moves process_start_time_seconds, as a CoreDNS
    restart would; the traffic after it is still the recorded traffic."""

    def __init__(self, scenario: str = "normal") -> None:
        self.texts = load_pages(scenario)
        self.values = [samples_of(t) for t in self.texts]
        self.restarts: list[int] = []

    def restart(self, at: int) -> Timeline:
        self.restarts.append(at)
        return self

    def _cum(self, key: str, n: int) -> float:
        """The counter at step n: the first page's value plus n recorded deltas."""
        k = len(self.values) - 1
        v = self.values[0].get(key, 0.0)
        for i in range(n):
            j = i % k
            v += max(0.0, self.values[j + 1].get(key, 0.0) - self.values[j].get(key, 0.0))
        return v

    def page(self, n: int) -> str:
        k = len(self.values) - 1
        tmpl = self.texts[n % k + (1 if n else 0)] if n else self.texts[0]
        since = max([r for r in self.restarts if r <= n], default=None)

        def value(key: str, name: str, v: float) -> float:
            if name == "process_start_time_seconds":
                return v + 1000.0 * sum(1 for r in self.restarts if r <= n)
            if not _COUNTER.search(name) or name.startswith("go_gc_duration"):
                return v
            c = self._cum(key, n)
            if since is not None:  # counters count from zero again since the restart
                c -= self._cum(key, since - 1)
            return max(c, 0.0)

        return rewrite(tmpl, value)


# -- a tiny page server ----------------------------------------------------------------
class PageServer:
    """A loopback HTTP server whose every path is a scripted CoreDNS: it answers with a real
    page, or a 5xx, an HTML login page, a truncated or huge body, or too slowly. It stands in
    for a broken CoreDNS because a real CoreDNS cannot be made to misbehave these ways."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[], tuple]] = {}
        self.hits: dict[str, int] = {}
        self.posted: list[tuple[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a) -> None:
                pass

            def do_POST(self) -> None:  # a fake Prometheus API: the form is kept for the test
                n = int(self.headers.get("Content-Length") or 0)
                server.posted.append((self.path, self.rfile.read(n).decode()))
                self.do_GET()

            def do_GET(self) -> None:
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                status, ctype, body, delay, *extra = route()
                headers = extra[0] if extra else {}
                if status == -1:  # accept, then hang up without an answer
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if status == -2:  # promise a body, send half of it, hang up
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if status == -3:  # a fast header, then the body dribbled over `delay` seconds
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    n = 20
                    try:
                        for i in range(n):
                            self.wfile.write(body[i * len(body) // n : (i + 1) * len(body) // n])
                            self.wfile.flush()
                            time.sleep(delay / n)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def address(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, path: str, status: int = 200, body: str | bytes = "", ctype: str = "text/plain; version=0.0.4", delay: float = 0.0, headers: dict | None = None) -> None:  # fmt: skip
        """Always answer `path` this way. status -1: hang up; -2: truncated; -3: dribbled."""
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = lambda: (status, ctype, data, delay, headers or {})

    def timeline(self, path: str, tl: Timeline, counter: list[int] | None = None) -> list[int]:
        """Serve tl.page(0), tl.page(1), ... one per request; returns the step counter."""
        step = counter if counter is not None else [0]

        def route():
            text = tl.page(step[0])
            step[0] += 1
            return 200, "text/plain; version=0.0.4", text.encode(), 0.0

        self.routes[path] = route
        return step

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeClock:
    """Stands in for time.time() in the scrape module so a step's timestamp advances by the
    model's step without the test sleeping 2 s per step (rates are delta / elapsed time)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def __getattr__(self, name):  # perf_counter, monotonic, sleep: the real ones
        return getattr(time, name)


# -- reading the exporter's output -------------------------------------------------------
def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus-client."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(metrics: dict, name: str, **labels: str) -> dict[tuple, float]:
    """The samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return {k: v for k, v in metrics.items() if k[0] == name and want <= set(k[1])}


def value(metrics: dict, name: str, **labels: str) -> float | None:
    found = series(metrics, name, **labels)
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} series: {found}"
    return next(iter(found.values()), None)


def copy_model(dst: Path) -> Path:
    shutil.copytree(MODEL_DIR, dst, ignore=shutil.ignore_patterns("keras"))
    return dst


def metrics_text(exporter) -> str:
    """The exporter's /metrics body, rendered by prometheus-client from its collector."""
    from prometheus_client import CollectorRegistry, generate_latest

    from coredns_anomaly.exporter.collector import ExporterCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(exporter))
    return generate_latest(registry).decode()


_BUMP = [0]


def bump_mtime(path: Path) -> None:
    """Give a just-written file an mtime no earlier write had: file mtimes tick at the kernel's
    clock granularity (a few ms), so two same-size writes in one tick would look unchanged to
    the exporter's (mtime, size) watch. (A limitation of polling mtimes, reported.)"""
    import os

    _BUMP[0] += 1
    t = time.time_ns() + _BUMP[0] * 1_000_000_000
    os.utime(path, ns=(t, t))


_WARM: dict[tuple, dict] = {}


def warm_baseline_state(bundle, scenario: str = "normal") -> dict:
    """A baseline learned from the recorded healthy pages over the bundle's whole warm-up, as a
    state the exporter restores (the path a restart takes): tests need an instance that already
    knows its normal before a fault, as a deployed exporter does after its first minutes."""
    from coredns_anomaly.exporter.baseline import InstanceBaseline
    from coredns_anomaly.exporter.features import FEATURE_NAMES, NEEDED_NAMES, FeatureState
    from coredns_anomaly.exporter.page import parse_needed

    key = (bundle.sha256, scenario)
    if key not in _WARM:
        spec, step = bundle.baseline, bundle.step_seconds
        tl, fs = Timeline(scenario), FeatureState(bundle.evidence)
        b = InstanceBaseline(spec, len(FEATURE_NAMES))
        t = 1_700_000_000.0
        n = int(spec.warmup_seconds / step) + int(spec.sample_every / step) * (spec.min_rows + 2)
        for i in range(n):
            t += step
            b.observe(fs.update(parse_needed(tl.page(i), NEEDED_NAMES), t), t)
        assert b.warm()
        _WARM[key] = b.to_state()
    return _WARM[key]


def prefill(x, clock: FakeClock, feeds: dict, steps: int, warm: bool = True) -> None:
    """Feed `steps` steps of each instance's timeline straight into the exporter's engine (the
    same pages the page server would serve next, on the same clock), so a test need not scrape
    a whole window over HTTP before the steps it is about. feeds: instance -> (Timeline,
    the page server's step counter from PageServer.timeline). With `warm`, an instance still
    learning gets a baseline already learned on healthy pages (warm_baseline_state)."""
    from coredns_anomaly.exporter.engine import Observation

    if warm:
        states = x.engine.states
        cold = [i for i in feeds if i not in states or states[i].learning]
        x.engine.restore_baselines({i: warm_baseline_state(x.engine.bundle) for i in cold})
    for _ in range(steps):
        clock.now += x.engine.bundle.step_seconds
        obs = []
        for inst, (tl, served) in feeds.items():
            obs.append(Observation(inst, clock.now, text=tl.page(served[0])))
            served[0] += 1
        x.engine.step(obs)
