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


# -- hostile targets (issue 13) ------------------------------------------------------------
class HostileServer:
    """A loopback TCP server that misbehaves byte by byte, as no HTTP library would: headers
    or a body dribbled one byte per `interval`, a TLS handshake that never completes, endless
    redirects, a target that flaps. Each connection gets a thread that gives up after `hold`
    seconds or at close(), so a test never leaves it running. `heads` keeps every request head.

    behaviours: slow_headers, dribble, tls_slow_handshake, redirect_loop (same host, each hop
    after `hop_delay`), redirect_to (`location`), page (`page()` with status 200), flapping
    (page and hang-up in turns of `flap_every` requests).
    """

    def __init__(self, behaviour: str, page: Callable[[], bytes] | None = None, interval: float = 0.2, hold: float = 30.0, hop_delay: float = 0.0, location: str = "", flap_every: int = 1) -> None:  # fmt: skip
        self.behaviour, self.page, self.interval, self.hold = behaviour, page, interval, hold
        self.hop_delay, self.location, self.flap_every = hop_delay, location, flap_every
        self.heads: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def instance(self) -> str:
        return f"127.0.0.1:{self.port}"

    def address(self, path: str = "/metrics", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self.sock.close()  # accept() in the server thread then fails and it ends

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(self.hold)
        try:
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    got = conn.recv(4096)
                    if not got:
                        return
                    head += got
                    if self.behaviour == "tls_slow_handshake":
                        break  # a ClientHello, not HTTP
                with self._lock:
                    self.requests += 1
                    n = self.requests
                    self.heads.append(head.decode("latin-1"))
                getattr(self, "_" + self.behaviour)(conn, head, n)
        except OSError:
            pass

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        end = time.monotonic() + self.hold
        for i in range(len(data)):
            if self._stop.is_set() or time.monotonic() > end:
                return
            conn.sendall(data[i : i + 1])
            time.sleep(self.interval)

    def _slow_headers(self, conn, head, n) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self._drip(conn, b"a" * 100_000)

    def _dribble(self, conn, head, n) -> None:
        body = self.page() if self.page else b"# dribble\n" * 1000
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
        self._drip(conn, body)

    def _tls_slow_handshake(self, conn, head, n) -> None:
        conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record follows... slowly
        self._drip(conn, b"\x02" * 16384)

    def _redirect_loop(self, conn, head, n) -> None:
        time.sleep(self.hop_delay)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /metrics?hop=%d\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % n)  # fmt: skip

    def _redirect_to(self, conn, head, n) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % self.location.encode())  # fmt: skip

    def _page(self, conn, head, n) -> None:
        body = self.page() if self.page else b""
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)  # fmt: skip

    def _flapping(self, conn, head, n) -> None:
        if (n - 1) // self.flap_every % 2 == 0:
            self._page(conn, head, n)
        # else: hang up without a word (the `with` closes the connection)


def redos_page(labels: int = 24, lines: int = 20) -> bytes:
    """Needed sample lines with many blank-separated labels, the input that made the old
    fallback regex of page.py backtrack exponentially (issue 13)."""
    lab = " ".join(f'l{i}="v"' for i in range(labels))
    row = f"coredns_dns_requests_total{{{lab} }} 5 x\n"
    return (load_pages("normal")[0] + "\n" + row * lines).encode()


def huge_page(series: int = 450_000) -> bytes:
    """A page of `series` samples of a family the features read, under the 20 MB size cap."""
    head = load_pages("normal")[0]
    rows = "".join(f'coredns_dns_requests_total{{z="{i}"}} 1\n' for i in range(series))  # fmt: skip
    return (head + "\n" + rows).encode()


def openssl_cert(directory: Path, name: str = "server", ca: tuple[Path, Path] | None = None, cn: str = "127.0.0.1") -> tuple[Path, Path]:  # fmt: skip
    """A P-256 certificate for 127.0.0.1 (loop/tls.py): real TLS for listener tests."""
    from coredns_anomaly.loop.tls import openssl_cert as make

    return make(directory, name, ca, cn)
