"""``coredns-anomaly webhook``: serve the receiver and page, export labels.

Heavy imports (Flask, gunicorn) happen inside handlers, so other roles' commands stay light.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("coredns_anomaly.webhook")

# Flags that map one-to-one onto settings (config.Settings); None = not given on the command line.
_SETTING_FLAGS = (
    ("--listen", "listen", str, "HOST:PORT to listen on (default 0.0.0.0:9095)"),
    ("--db", "db", str, "SQLite file of the alert store (default ./webhook.db)"),
    ("--workers", "workers", int, "gunicorn worker processes (default 2)"),
    ("--threads", "threads", int, "gthread worker only: threads per worker (default 8)"),
    (
        "--worker-class",
        "worker_class",
        str,
        "gunicorn worker class: gevent (default; slow clients cannot starve it), or gthread / "
        "sync behind a buffering proxy only",
    ),
    (
        "--worker-connections",
        "worker_connections",
        int,
        "gevent: simultaneous connections per worker (default 2000)",
    ),
    (
        "--header-timeout",
        "header_timeout",
        int,
        "seconds a client has for the TLS handshake and a request's headers; also the "
        "keep-alive idle time (default 5)",
    ),
    (
        "--web-config-file",
        "web_config_file",
        str,
        "Prometheus-style web config YAML: tls_server_config, basic_auth_users (bcrypt)",
    ),
    (
        "--max-body-bytes",
        "max_body_bytes",
        int,
        "largest accepted delivery (default 4 MiB); larger: 413",
    ),
    (
        "--bearer-token-file",
        "bearer_token_file",
        str,
        "file holding the bearer token Alertmanager sends",
    ),
    ("--basic-auth-username", "basic_auth_username", str, "basic auth user name"),
    (
        "--basic-auth-password-file",
        "basic_auth_password_file",
        str,
        "file holding the basic auth password",
    ),
    (
        "--metrics-dir",
        "metrics_dir",
        str,
        "prometheus_client multiprocess directory (wiped at start)",
    ),
    (
        "--prometheus-url",
        "prometheus_url",
        str,
        "Prometheus base URL, for score graph links on the page",
    ),
    (
        "--own-alertnames",
        "own_alertnames",
        str,
        "regex of this project's alert names (never weak labels)",
    ),
    (
        "--weak-matchers",
        "weak_matchers",
        str,
        "which other alerts may be weak labels, e.g. 'alertname=~\"CoreDNS.*\"' (the default)",
    ),
    ("--log-level", "log_level", str, "debug, info, warning or error"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webhook",
        help="Alertmanager receiver, alert store and feedback page",
        description="Receive Alertmanager notifications durably; label them on a web page.",
    )
    sub = parser.add_subparsers(dest="webhook_command", required=True, metavar="SUBCOMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the receiver and page (gunicorn; --dev for Flask's server)",
        description="Every flag also reads COREDNS_ANOMALY_WEBHOOK_<NAME> and the --config YAML file "
        "(flags > environment > file > defaults). Secrets only from files or environment.",
    )
    _add_common(serve)
    for flag, dest, typ, help_text in _SETTING_FLAGS:
        if dest == "web_config_file":
            # Also the spelling Prometheus, Alertmanager and the exporters use.
            serve.add_argument(
                flag, "--web.config.file", dest=dest, type=typ, default=None, help=help_text
            )
        elif dest != "db":
            serve.add_argument(flag, dest=dest, type=typ, default=None, help=help_text)
    serve.add_argument(
        "--allow-unauthenticated",
        dest="allow_unauthenticated",
        action="store_const",
        const=True,
        default=None,
        help="run without credentials (otherwise refused); anyone can post alerts and verdicts",
    )
    serve.add_argument(
        "--access-log",
        dest="access_log",
        action="store_const",
        const=True,
        default=None,
        help="log every request",
    )
    serve.add_argument("--dev", action="store_true", help="Flask's development server, one process")
    serve.add_argument(
        "--check", action="store_true", help="validate settings and credentials, then exit"
    )
    serve.set_defaults(handler=_serve)

    export = sub.add_parser(
        "export-labels",
        help="write the verdicts as a label file (the format `train` reads)",
        description="Read the alert store directly (no server needed) and write docs/labels.md's CSV.",
    )
    _add_common(export)
    export.add_argument("--out", "-o", default="-", help="output file (default: stdout)")
    export.add_argument(
        "--include-weak",
        action="store_true",
        help="also export unlabelled alerts of other rules (e.g. the mixin's) as weak anomaly labels",
    )
    export.add_argument("--alertname", default="", help="only this alert name")
    export.add_argument(
        "--since", default="", help="only alerts active after this (RFC 3339, or 24h / 7d)"
    )
    export.add_argument("--until", default="", help="only alerts starting before this (RFC 3339)")
    export.set_defaults(handler=_export)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=None, help="YAML settings file (COREDNS_ANOMALY_WEBHOOK_CONFIG)"
    )
    p.add_argument(
        "--db",
        dest="db",
        default=None,
        help="SQLite file of the alert store (default ./webhook.db)",
    )


def _settings(args: argparse.Namespace):
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.webhook.config import ConfigError, load_settings

    overrides = {"config": args.config, "db": args.db}
    for _, dest, _, _ in _SETTING_FLAGS:
        overrides.setdefault(dest, getattr(args, dest, None))
    for dest in ("allow_unauthenticated", "access_log"):
        overrides[dest] = getattr(args, dest, None)
    try:
        return load_settings(overrides), overrides
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _serve(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.webhook.auth import Credentials
    from coredns_anomaly.webhook.config import (
        CONFIG_ENV,
        ConfigError,
        check_private_dir,
        default_metrics_dir,
    )
    from coredns_anomaly.webhook.store import AlertStore, StoreError
    from coredns_anomaly.webhook.webconfig import load_web_config

    settings, overrides = _settings(args)
    try:
        credentials = Credentials.from_settings(settings)
        web = load_web_config(settings.web_config_file)
        if not args.dev:
            # Only check here (gunicorn's master creates it): --check must not leave files.
            metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or default_metrics_dir(
                settings
            )
            check_private_dir(metrics_dir, create=False)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if credentials.open and not settings.allow_unauthenticated:
        raise UsageError(
            "no credentials configured; refusing to start. Set --bearer-token-file and/or "
            "--basic-auth-username with --basic-auth-password-file (or the COREDNS_ANOMALY_WEBHOOK_* "
            "variables, or basic_auth_users in --web-config-file), or pass "
            "--allow-unauthenticated to run open"
        )
    db_dir = Path(settings.db).resolve().parent
    if not db_dir.is_dir():
        raise UsageError(f"directory of --db does not exist: {db_dir}")
    try:
        AlertStore(settings.db).init_schema()
    except StoreError as exc:
        raise UsageError(f"cannot open the alert store: {exc}") from None
    if args.check:
        print(
            f"ok: store {settings.db}, listen {settings.listen}"
            f"{' (TLS)' if web.tls else ''}, "
            f"auth {'open' if credentials.open else 'required'}"
        )
        return 0

    if args.dev:
        from coredns_anomaly.webhook.app import create_app

        host, port = settings.host_port
        log.info("Flask development server on %s:%d (use gunicorn in production)", host, port)
        create_app(settings).run(
            host=host,
            port=port,
            threaded=True,
            use_reloader=False,
            ssl_context=web.tls.context() if web.tls else None,
        )
        return 0

    # gunicorn: hand the resolved flags to master and workers through the environment, then
    # become the master (exec), so signals and kill -9 reach gunicorn itself.
    env = dict(os.environ)
    given = {k for k, v in overrides.items() if v is not None and k != "config"}
    env.update(settings.to_env(only=given))
    if args.config:
        env[CONFIG_ENV] = str(Path(args.config).resolve())
    env["COREDNS_ANOMALY_WEBHOOK_DB"] = str(Path(settings.db).resolve())
    argv = gunicorn_argv()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def gunicorn_argv() -> list[str]:
    """The gunicorn command line with the shipped config (`webhook serve` execs it)."""
    conf = Path(__file__).with_name("gunicorn.conf.py")
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(conf),
        "coredns_anomaly.webhook.app:create_app()",
    ]


def _export(args: argparse.Namespace) -> int:
    from coredns_anomaly.cli import UsageError
    from coredns_anomaly.webhook.labels import write_label_file
    from coredns_anomaly.webhook.store import AlertStore, since_key

    settings, _ = _settings(args)
    if not Path(settings.db).is_file():
        raise UsageError(f"no alert store at {settings.db}")
    store = AlertStore(settings.db)
    try:
        records = store.label_records(
            include_weak=args.include_weak,
            own_alertnames=settings.own_alertnames,
            weak_matchers=settings.weak_matchers,
            alertname=args.alertname,
            since=since_key(args.since),
            until=since_key(args.until),
        )
    except ValueError as exc:
        raise UsageError(f"bad --since/--until: {exc}") from None
    if args.out == "-":
        write_label_file(sys.stdout, records)
    else:
        write_label_file(args.out, records)
        log.info("wrote %d label(s) to %s", len(records), args.out)
    return 0
