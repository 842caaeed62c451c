"""gunicorn config shipped with the webhook; settings come from COREDNS_ANOMALY_WEBHOOK_* (config.py).

    gunicorn -c <this file> 'coredns_anomaly.webhook.app:create_app()'

(``coredns-anomaly webhook serve`` does exactly that.) No preload: each worker builds its own
app after fork, so SQLite connections are never shared across processes and prometheus_client
is first imported in workers, after PROMETHEUS_MULTIPROC_DIR is set below.

Worker model (issue 13, docs/webhook.md "Slow clients"): gevent by default. A gthread worker
gives each connection one of its threads while it reads the headers, so 100 clients sending a
header line every 2 s took every thread and deliveries timed out. With gevent a connection is a
greenlet; gunicorn's gevent worker reads each request's headers under a deadline (its
``keepalive``, here ``header_timeout``), and the TLS handshake gets the same deadline
(webconfig.DeadlineContext), so a slow or silent client is cut after a few seconds whatever it
does.
"""

import glob
import ipaddress
import logging
import os
import sys

from coredns_anomaly.webhook.config import (
    ConfigError,
    check_private_dir,
    default_metrics_dir,
    load_settings,
)
from coredns_anomaly.webhook.webconfig import DeadlineContext, load_web_config

try:
    _settings = load_settings()
    _web = load_web_config(_settings.web_config_file)
except ConfigError as _exc:
    # gunicorn would print a traceback for an exception raised while reading its config.
    print(f"coredns-anomaly webhook: error: {_exc}", file=sys.stderr)
    sys.exit(2)

# Multiprocess metrics: one directory for this server, set before any worker imports the client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = default_metrics_dir(_settings)

bind = [_settings.listen]
workers = _settings.workers
worker_class = _settings.worker_class
# gunicorn silently turns "sync" into gthread when threads > 1; honour an explicit sync.
threads = 1 if worker_class == "sync" else _settings.threads
# gevent: connections (greenlets) per worker; past it, new connections wait in the backlog.
worker_connections = _settings.worker_connections
timeout = _settings.timeout
graceful_timeout = 10
# gevent worker: the deadline for a request's line and headers, and for an idle keep-alive.
keepalive = _settings.header_timeout
preload_app = False
proc_name = "coredns-anomaly-webhook"
errorlog = "-"
loglevel = _settings.log_level
accesslog = "-" if _settings.access_log else None
# Alertmanager's payloads are JSON bodies; headers and request lines stay gunicorn's defaults.
forwarded_allow_ips = "127.0.0.1"
# gunicorn >= 25 opens a control socket at one fixed path per user: two servers would collide.
control_socket_disable = True
# Workers' heartbeat touches a temp file on every loop; on a disk-backed /tmp that costs ~0.3 ms
# per request (gunicorn's docs recommend a tmpfs).
if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
    worker_tmp_dir = "/dev/shm"

# TLS from --web-config-file (tls_server_config).
if _web.tls is not None:
    certfile = _web.tls.cert_file
    keyfile = _web.tls.key_file
    cert_reqs = _web.tls.cert_reqs
    if _web.tls.client_ca_file:
        ca_certs = _web.tls.client_ca_file


def ssl_context(conf, default_ssl_context_factory):
    """gunicorn's context (cert, key, client CA) plus the web config's TLS versions and a
    handshake deadline."""
    ctx = default_ssl_context_factory()
    if _web.tls is not None:
        _web.tls.apply(ctx)
    return DeadlineContext(ctx, _settings.header_timeout)


def on_starting(server):
    """Master, before workers: refuse to run open by accident, check and wipe the metrics
    directory, create the schema once."""
    from coredns_anomaly.webhook.auth import Credentials

    log = logging.getLogger("gunicorn.error")
    try:
        open_mode = Credentials.from_settings(_settings).open
    except ConfigError as exc:
        server.log.error("coredns-anomaly webhook: %s", exc)
        sys.exit(2)
    if open_mode and not _settings.allow_unauthenticated:
        server.log.error(
            "coredns-anomaly webhook: no credentials configured; refusing to start "
            "(set COREDNS_ANOMALY_WEBHOOK_BEARER_TOKEN_FILE and/or basic auth, "
            "or COREDNS_ANOMALY_WEBHOOK_ALLOW_UNAUTHENTICATED=true to run open)"
        )
        sys.exit(2)
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        check_private_dir(path)
    except ConfigError as exc:
        server.log.error("coredns-anomaly webhook: %s", exc)
        sys.exit(2)
    # Only prometheus_client's own files: the directory may be one the user shares.
    for f in glob.glob(os.path.join(path, "*.db")):
        os.remove(f)
    from coredns_anomaly.webhook.store import AlertStore, StoreError

    try:
        AlertStore(_settings.db).init_schema()
    except StoreError as exc:
        server.log.error("coredns-anomaly webhook: cannot open the alert store: %s", exc)
        sys.exit(2)
    if _web.tls is None and not _loopback(_settings.host_port[0]):
        log.warning(
            "coredns-anomaly webhook: plain HTTP on %s: tokens and passwords cross the network "
            "in clear; configure tls_server_config in --web-config-file or put a TLS proxy in "
            "front (docs/webhook.md, 'A safe deployment')",
            _settings.listen,
        )
    log.info(
        "coredns-anomaly webhook: store %s, metrics dir %s, %s worker(s) %s, %s",
        _settings.db,
        path,
        _settings.workers,
        _settings.worker_class,
        "TLS" if _web.tls is not None else "plain HTTP",
    )


def child_exit(server, worker):
    """Master, after a worker exits (even by kill -9): drop its live-gauge files."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
