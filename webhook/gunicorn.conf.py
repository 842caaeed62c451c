"""gunicorn config shipped with the webhook; settings come from COREDNS_ANOMALY_WEBHOOK_* (config.py).

    gunicorn -c <this file> 'coredns_anomaly.webhook.app:create_app()'

(``coredns-anomaly webhook serve`` does exactly that.) No preload: each worker builds its own
app after fork, so SQLite connections are never shared across processes and prometheus_client
is first imported in workers, after PROMETHEUS_MULTIPROC_DIR is set below.
"""

import glob
import logging
import os
import sys
import tempfile

from coredns_anomaly.webhook.config import load_settings

_settings = load_settings()

# Multiprocess metrics: one directory for this server, set before any worker imports the client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _settings.metrics_dir or os.path.join(
        tempfile.gettempdir(), f"coredns-anomaly-webhook-metrics-{_settings.host_port[1]}"
    )

bind = [_settings.listen]
workers = _settings.workers
worker_class = _settings.worker_class
# gunicorn silently turns "sync" into gthread when threads > 1; honour an explicit sync.
threads = 1 if worker_class == "sync" else _settings.threads
timeout = _settings.timeout
graceful_timeout = 10
keepalive = 5
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


def on_starting(server):
    """Master, before workers: refuse to run open by accident, wipe stale metric files, create
    the schema once."""
    from coredns_anomaly.webhook.auth import Credentials
    from coredns_anomaly.webhook.config import ConfigError

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
    os.makedirs(path, exist_ok=True)
    # Only prometheus_client's own files: the directory may be one the user shares.
    for f in glob.glob(os.path.join(path, "*.db")):
        os.remove(f)
    from coredns_anomaly.webhook.store import AlertStore

    AlertStore(_settings.db).init_schema()
    logging.getLogger("gunicorn.error").info(
        "coredns-anomaly webhook: store %s, metrics dir %s", _settings.db, path
    )


def child_exit(server, worker):
    """Master, after a worker exits (even by kill -9): drop its live-gauge files."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
