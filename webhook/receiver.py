"""POST /webhook: the Alertmanager receiver, a plain WSGI handler in front of the Flask app.

Why not a Flask view: on a 2-core box the receiver must sustain hundreds of deliveries a second
with fsynced writes, and Flask's per-request machinery (contexts, hooks, response objects) was
a fifth of a delivery's CPU. This one path gets a small handler; everything else (the page,
the export, health, metrics) is Flask. create_app() installs it with ``app.wsgi_app = ...``,
so gunicorn, the dev server and Flask's test client all go through it.

Hostile input (issue 13): only ``application/json`` is accepted (415 otherwise), and a request a
browser marks as cross-site or from another origin is refused (403), so a page cannot make a
logged-in browser post an alert with its cached basic-auth login (an auto-submitting
``enctype="text/plain"`` form needs neither CORS nor JavaScript). Alertmanager sends
``application/json`` and no ``Origin``. A delivery the store can never hold is answered 422, so
Alertmanager drops it instead of retrying it forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from coredns_anomaly.webhook import metrics
from coredns_anomaly.webhook.auth import Credentials
from coredns_anomaly.webhook.schema import Delivery, PayloadError, parse_delivery
from coredns_anomaly.webhook.store import (
    AlertStore,
    StoreError,
    StoreResult,
    UnstorableDelivery,
)

log = logging.getLogger("coredns_anomaly.webhook")

RECEIVER_PATH = "/webhook"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Reject(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


class Receiver:
    """WSGI middleware: handles POST /webhook, passes every other request to ``app``."""

    def __init__(
        self, app: Callable, store: AlertStore, credentials: Credentials, max_body_bytes: int
    ) -> None:
        self.app = app
        self.store = store
        self.credentials = credentials
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != RECEIVER_PATH:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(
                start_response, 405, {"status": "error", "error": "POST only"}, [("Allow", "POST")]
            )
        started = time.perf_counter()
        metrics.DELIVERIES.inc()
        headers: list[tuple[str, str]] = []
        try:
            status, body = 200, self._handle(environ)
        except _Reject as exc:
            if exc.reason:
                metrics.REJECTED.labels(exc.reason).inc()
            if exc.status == 401:
                headers.append(("WWW-Authenticate", self.credentials.challenge()))
            status, body = exc.status, {"status": "error", "error": str(exc)}
        except Exception:
            # A bug, not the payload's fault: 5xx, so Alertmanager keeps the notification.
            log.exception("unexpected error while receiving a delivery")
            status, body = 500, {"status": "error", "error": "internal error, retry later"}
        finally:
            metrics.LATENCY.observe(time.perf_counter() - started)
        return _respond(start_response, status, body, headers)

    def _handle(self, environ: dict[str, Any]) -> dict[str, Any]:
        if self.credentials.check(environ.get("HTTP_AUTHORIZATION")) is None:
            raise _Reject(401, "unauthorized", "unauthorized")
        problem = cross_site(environ)
        if problem:
            raise _Reject(403, "cross_site", f"cross-site request refused ({problem})")
        if not is_json(environ.get("CONTENT_TYPE", "")):
            raise _Reject(415, "unsupported_media_type", "Content-Type must be application/json")
        raw = self._read_body(environ)
        try:
            delivery = parse_delivery(raw)
        except PayloadError as exc:
            reason = "invalid_json" if str(exc).startswith("invalid JSON") else "invalid_schema"
            raise _Reject(400, reason, str(exc)) from None
        try:
            result = self.store.store_delivery(delivery)
        except UnstorableDelivery as exc:
            metrics.STORE_ERRORS.inc()
            log.error(
                "delivery (group %r) can never be stored: %s; answering 422 so Alertmanager "
                "drops it (its raw body is not kept)",
                delivery.group_key[:200],
                exc,
            )
            raise _Reject(422, "unstorable", f"delivery cannot be stored: {exc}") from None
        except StoreError as exc:
            metrics.STORE_ERRORS.inc()
            log.error(
                "could not store delivery (group %r): %s; answering 503",
                delivery.group_key[:200],
                exc,
            )
            raise _Reject(503, "", "storage unavailable, retry later") from None
        _count(delivery, result)
        return {
            "status": "ok",
            "delivery": result.delivery_id,
            "stored": result.stored,
            "updated": result.updated,
            "duplicates": result.duplicates,
        }

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        """The body, at most max_body_bytes (413 beyond), with or without Content-Length."""
        limit = self.max_body_bytes
        stream = environ["wsgi.input"]
        too_large = _Reject(413, "too_large", f"payload larger than {limit} bytes")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        length_text = environ.get("CONTENT_LENGTH", "")
        if length_text and not chunked:
            try:
                length = int(length_text)
            except ValueError:
                raise _Reject(400, "invalid_json", "invalid Content-Length") from None
            if length > limit:
                raise too_large
            body = stream.read(length) if length > 0 else b""
            if len(body) < length:
                raise _Reject(400, "invalid_json", "body shorter than its Content-Length")
            return body
        if not (chunked or environ.get("wsgi.input_terminated")):
            return b""  # no length and a server that does not end the stream: nothing safe to read
        parts, size = [], 0
        while True:
            chunk = stream.read(min(65536, limit + 1 - size))
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                raise too_large


def cross_site(environ: dict[str, Any]) -> str:
    """Why a request looks like a browser's cross-site post ('' if it does not).

    ``Sec-Fetch-Site`` other than same-origin/none (a page on another port of the same host is
    "same-site", still another origin), or an ``Origin`` that is not this server's own.
    Alertmanager and curl send neither header.
    """
    site = environ.get("HTTP_SEC_FETCH_SITE", "").strip().lower()
    if site and site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site: {site[:40]}"
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return ""
    origin = origin.strip()
    if origin.lower() == "null":  # sandboxed frames, data: URLs, some redirects
        return "Origin: null"
    # Host and port only (like the page's check): behind a TLS proxy the scheme seen here is http.
    if urlsplit(origin).netloc.lower() != environ.get("HTTP_HOST", "").lower():
        return f"Origin: {origin[:100]}"
    return ""


def is_json(content_type: str) -> bool:
    """``application/json`` with any parameters (``; charset=utf-8``), case-insensitive."""
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _count(delivery: Delivery, result: StoreResult) -> None:
    metrics.DELIVERIES_STORED.inc()
    if result.duplicate_delivery:
        metrics.DELIVERIES_DUPLICATE.inc()
    received: dict[str, int] = {}
    for a in delivery.alerts:
        received[a.status] = received.get(a.status, 0) + 1
    for status, n in received.items():
        metrics.ALERTS_RECEIVED.labels(status).inc(n)
    for status, n in result.stored_by_status:
        metrics.ALERTS_STORED.labels(status).inc(n)
    if result.duplicates:
        metrics.ALERTS_DUPLICATE.inc(result.duplicates)
    if result.updated:
        metrics.ALERTS_UPDATED.inc(result.updated)
    if result.refired:
        metrics.ALERTS_REFIRED.inc(result.refired)
    if delivery.truncated_alerts:
        metrics.ALERTS_TRUNCATED.inc(delivery.truncated_alerts)
        log.warning(
            "Alertmanager truncated %d alert(s) of group %r (raise max_alerts in webhook_config)",
            delivery.truncated_alerts,
            delivery.group_key[:200],
        )


def _respond(
    start_response: Callable, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        f"{status} {_REASONS.get(status, '')}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ],
    )
    return [data]
