"""HTTP endpoints: /metrics, a landing page, /-/healthy and /-/ready.

prometheus-client's WSGI app serves /metrics (content negotiation, gzip, OpenMetrics); the
other paths are a few lines each, served by prometheus-client's threading WSGI server.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

from .collector import ExporterCollector

if TYPE_CHECKING:
    from .service import Exporter


def make_app(exporter: Exporter):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExporterCollector(exporter))
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics(environ, start_response)
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


def _text(start_response, status: str, body: str, ctype: str = "text/plain; charset=utf-8"):
    data = body.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def _landing(x: Exporter) -> str:
    b = x.engine.bundle
    with x.lock:
        rows = sorted(x.engine.states.items())
        cells = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{'up' if st.up else 'down'}</td>"
            f"<td>{st.fill_ratio:.0%}</td><td>{'' if st.verdict is None else f'{st.verdict.score:.2f}'}</td>"
            f"<td>{'' if st.verdict is None else int(st.verdict.anomaly)}</td>"
            f"<td>{html.escape(st.verdict.type if st.verdict else '')}</td></tr>"
            for n, st in rows[:200]
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


def serve(exporter: Exporter, listen: str) -> tuple[ThreadingWSGIServer, threading.Thread]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    httpd = make_server(
        host, int(port), make_app(exporter), ThreadingWSGIServer, handler_class=_SilentHandler
    )
    t = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    t.start()
    return httpd, t
