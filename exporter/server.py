"""HTTP endpoints: /metrics, a landing page, /-/healthy and /-/ready, on a bounded server.

prometheus-client's WSGI app serves /metrics (content negotiation, gzip, OpenMetrics); the
other paths are a few lines each. The server is ours, not prometheus-client's thread per
connection: a fixed pool of workers takes accepted connections from a bounded queue (a full
queue closes the newcomer at once), and every connection lives under one deadline covering the
TLS handshake, the request and the answer (exporter/deadline.py). A connection reaches a
worker only once its first bytes arrive: idle connections wait in one selector thread (at most
`IDLE_MAX`, each for at most CONNECTION_SECONDS), so they cost no worker. A client that starts a
request and stalls holds one worker until its deadline. TLS and basic auth come from
`--web-config-file` (exporter/webconfig.py); /-/healthy and /-/ready stay open for probes.
"""

from __future__ import annotations

import contextlib
import gzip
import html
import logging
import queue
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import _SilentHandler, choose_encoder, gzip_accepted

from .collector import ExporterCollector, current_snapshot, is_stale
from .deadline import Deadline, Watchdog
from .webconfig import UNAUTHENTICATED_PATHS, WebConfigFile

if TYPE_CHECKING:
    from .service import Exporter

log = logging.getLogger("coredns_anomaly.exporter")
WORKERS = 8  # /metrics renders a prepared snapshot in milliseconds: a few workers are plenty
QUEUE = 64  # accepted connections waiting for a worker; more are closed at once
CONNECTION_SECONDS = 10.0  # handshake + request + answer; Prometheus' default scrape timeout
IDLE_MAX = 1024  # accepted connections that have sent nothing yet; more are closed at once


OPENMETRICS = "application/openmetrics-text; version=1.0.0"  # what Prometheus asks for first


class RenderedMetrics:
    """/metrics bodies rendered once per step and format, then served as bytes.

    A scrape then costs the exporter a dictionary lookup, not a render of every series, which
    keeps /metrics fast while a step holds the CPU; `warm()` renders the usual formats at the
    end of each step, in the step's thread. Anything that changes the output (a new snapshot,
    staleness, the step and reload counters) changes the key.
    """

    def __init__(self, exporter: Exporter, registry: CollectorRegistry) -> None:
        self.x, self.registry = exporter, registry
        self._bodies: dict[tuple[str, bool], tuple[object, tuple, bytes]] = {}

    def _state(self) -> tuple[object, tuple]:
        x = self.x
        return current_snapshot(x), (
            is_stale(x), x.steps, x.overruns, x.reloads["success"], x.reloads["failure"],
            x.last_reload_ok, x.last_step_seconds,
        )  # fmt: skip

    def get(self, accept: str | None, gzipped: bool) -> tuple[bytes, str]:
        encoder, ctype = choose_encoder(accept)
        snap, state = self._state()
        hit = self._bodies.get((ctype, gzipped))
        if hit is not None and hit[0] is snap and hit[1] == state:
            return hit[2], ctype
        plain = self._bodies.get((ctype, False))
        if plain is not None and plain[0] is snap and plain[1] == state:
            body = plain[2]
        else:
            body = encoder(self.registry)
            self._bodies[(ctype, False)] = (snap, state, body)
        if gzipped:
            body = gzip.compress(body, 6)
            self._bodies[(ctype, True)] = (snap, state, body)
        return body, ctype

    def warm(self) -> None:
        for accept in (None, OPENMETRICS):
            for gzipped in (False, True):
                self.get(accept, gzipped)


def make_app(exporter: Exporter, web: WebConfigFile | None = None) -> Callable:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(exporter))
    metrics = make_wsgi_app(registry)  # for what the cache does not cover (name[], OPTIONS)
    rendered = RenderedMetrics(exporter, registry)
    exporter.step_hooks.append(rendered.warm)

    def metrics_app(environ, start_response):
        if environ.get("REQUEST_METHOD") != "GET" or "name[]" in environ.get("QUERY_STRING", ""):
            return metrics(environ, start_response)
        gz = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING"))
        body, ctype = rendered.get(environ.get("HTTP_ACCEPT"), gz)
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers + ([("Content-Encoding", "gzip")] if gz else []))
        return [body]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if web is not None:
            cfg = web.get()
            extra = list(cfg.headers)
            if extra:
                inner = start_response

                def start_response(status, headers, exc_info=None):
                    return inner(status, list(headers) + extra, exc_info)

            if path not in UNAUTHENTICATED_PATHS and not cfg.authorized(
                environ.get("HTTP_AUTHORIZATION")
            ):
                return _text(
                    start_response, "401 Unauthorized", "Unauthorized\n",
                    extra=[("WWW-Authenticate", 'Basic realm="coredns-anomaly"')],
                )  # fmt: skip
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/-/healthy":
            return _text(start_response, "200 OK", "OK\n")
        if path == "/-/ready":
            ready = exporter.engine is not None
            return _text(
                start_response,
                "200 OK" if ready else "503 Service Unavailable",
                "ready\n" if ready else "model not loaded\n",
            )
        if path == "/":
            return _text(start_response, "200 OK", _landing(exporter), "text/html; charset=utf-8")
        return _text(start_response, "404 Not Found", "not found: try /metrics\n")

    return app


def _text(
    start_response, status: str, body: str, ctype: str = "text/plain; charset=utf-8",
    extra: Iterable[tuple[str, str]] = (),
) -> list[bytes]:  # fmt: skip
    data = body.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data))), *extra])
    return [data]


def _landing(x: Exporter) -> str:
    b = x.engine.bundle
    rows = current_snapshot(x).rows  # the last completed step, never waiting on a running one
    stale = is_stale(x)
    cells = "".join(
        f"<tr><td>{html.escape(r.instance)}</td><td>{'up' if r.up else 'down'}</td>"
        f"<td>{r.fill_ratio:.0%}</td><td>{'' if r.score is None or stale else f'{r.score:.2f}'}</td>"
        f"<td>{'' if r.anomaly is None or stale else int(r.anomaly)}</td>"
        f"<td>{html.escape(r.type)}</td></tr>"
        for r in rows[:200]
    )
    return (
        "<!doctype html><html><head><title>coredns-anomaly exporter</title></head><body>"
        "<h1>coredns-anomaly exporter</h1>"
        f"<p>Model: {html.escape(b.kind)} {html.escape(b.version)}, window {b.window} x {b.step_seconds:g} s, "
        f"sha256 <code>{b.sha256[:16]}</code>, runtime {html.escape(x.runtime_name)}.</p>"
        f"<p>{len(rows)} targets (showing up to 200). <a href='/metrics'>/metrics</a> · "
        "<a href='/-/healthy'>/-/healthy</a> · <a href='/-/ready'>/-/ready</a></p>"
        "<table border=1 cellpadding=4><tr><th>instance</th><th>scrape</th><th>window</th>"
        f"<th>score</th><th>anomaly</th><th>type</th></tr>{cells}</table></body></html>"
    )


class PooledWSGIServer(WSGIServer):
    """wsgiref's server with a fixed worker pool, connection deadlines and optional TLS.

    `serve_forever` is one selector loop that accepts connections and parks them until their
    first bytes arrive, then hands them to a worker: two threads touch a request, whatever
    the number of connections.
    """

    request_queue_size = 128  # listen backlog

    def __init__(
        self, address: tuple[str, int], app: Callable, web: WebConfigFile | None = None,
        workers: int = WORKERS, backlog: int = QUEUE,
    ) -> None:  # fmt: skip
        self.address_family = _family(address[0])
        super().__init__(address, _SilentHandler)
        self.set_app(app)
        self.web = web
        self._jobs: queue.Queue[tuple[socket.socket, tuple, Deadline] | None] = queue.Queue(backlog)
        self._watchdog = Watchdog("http-deadlines")
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._workers = [
            threading.Thread(target=self._work, name=f"http-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._workers:
            t.start()
        self.refused = 0  # connections closed: too many idle ones, or every worker busy

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._stopped.clear()
        self.socket.setblocking(False)
        self._sel.register(self.socket, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping.is_set():
                for key, _ in self._sel.select(timeout=poll_interval):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:  # a parked connection said something: a worker takes it
                        self._sel.unregister(key.fileobj)
                        self._dispatch(key.data)
                for key in list(self._sel.get_map().values()):
                    if isinstance(key.data, tuple) and key.data[2].passed():  # never a word
                        self._sel.unregister(key.fileobj)
                        self._drop(key.data)
        finally:
            for key in list(self._sel.get_map().values()):
                self._sel.unregister(key.fileobj)
                if isinstance(key.data, tuple):
                    self._drop(key.data)
            self._stopping.clear()
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serve_forever (from another thread) and wait until it has returned."""
        if self._stopped.is_set():
            return
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._stopped.wait()

    def _accept(self) -> None:
        while True:
            try:
                conn, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: keep serving the others
                log.warning("accept failed: %s", exc)
                return
            conn.setblocking(True)
            if len(self._sel.get_map()) - 2 >= IDLE_MAX:
                self.refused += 1
                self.shutdown_request(conn)
                continue
            # parked connections are expired by this loop; the watchdog (and a descriptor
            # duplicate) is needed only once a worker may block on the connection
            self._sel.register(
                conn, selectors.EVENT_READ, (conn, addr, Deadline(CONNECTION_SECONDS))
            )

    def _dispatch(self, item: tuple[socket.socket, tuple, Deadline]) -> None:
        self._watchdog.add(item[2]).watch(item[0])
        try:
            self._jobs.put_nowait(item)
        except queue.Full:
            self.refused += 1
            self._drop(item)

    def _drop(self, item: tuple[socket.socket, tuple, Deadline]) -> None:
        item[2].close()
        self.shutdown_request(item[0])

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            request, addr, deadline = item
            try:
                request.settimeout(CONNECTION_SECONDS)
                ctx = self.web.get().ssl_context if self.web is not None else None
                if ctx is not None:
                    request = ctx.wrap_socket(request, server_side=True)  # handshake: deadline
                self.finish_request(request, addr)
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.debug("connection from %s: %s", addr[0] if addr else "?", exc)
            except Exception:  # a bug in a handler must not kill the worker
                log.exception("connection from %s", addr[0] if addr else "?")
            finally:
                deadline.close()
                self.shutdown_request(request)

    def server_close(self) -> None:
        self.shutdown()
        super().server_close()
        for _ in self._workers:
            with contextlib.suppress(queue.Full):
                self._jobs.put_nowait(None)
        self._watchdog.stop()
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET


def serve(
    exporter: Exporter, listen: str, web: WebConfigFile | None = None
) -> tuple[PooledWSGIServer, threading.Thread]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    httpd = PooledWSGIServer((host, int(port)), make_app(exporter, web), web)
    # a short poll so shutdown() (SIGTERM) returns in a tenth of a second, not half a second
    t = threading.Thread(target=httpd.serve_forever, args=(0.1,), name="http", daemon=True)
    t.start()
    return httpd, t
