"""`coredns-anomaly exporter` (and `features`): flags, env vars and a YAML file, flags win.

Every option has one definition in OPTIONS: its flag, its env var (COREDNS_ANOMALY_ + the flag
in upper snake case), its YAML key (the flag with underscores) and its default.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_LISTEN = "0.0.0.0:9096"


@dataclass(frozen=True)
class Option:
    flag: str
    help: str
    type: Any = str
    default: Any = None
    many: bool = False  # repeatable flag, comma-separated env, YAML list
    boolean: bool = False
    aliases: tuple[str, ...] = ()  # other spellings of the flag (e.g. node_exporter's)

    @property
    def key(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "COREDNS_ANOMALY_" + self.key.upper()


OPTIONS: tuple[Option, ...] = (
    Option("--model", "model bundle directory (model.json + model.tflite); watched for changes", default="models/default"),
    Option("--target", "CoreDNS metrics URL or host:port (repeatable)", many=True),
    Option("--targets-file", "Prometheus file_sd file (JSON/YAML) of targets, re-read when it changes"),
    Option("--prometheus-url", "read metrics from this Prometheus-compatible API instead of (or besides) scraping"),
    Option("--prometheus-selector", "series selector for the Prometheus source", default='{job="coredns"}'),
    Option("--prometheus-instance-label", "label that names the CoreDNS instance in Prometheus", default="instance"),
    Option("--shard", "keep only targets whose hashmod of host:port is i of n (Prometheus hashmod)", default="0/1"),
    Option("--listen", "address for /metrics", default=DEFAULT_LISTEN),
    Option("--scrape-timeout", "seconds per scrape or API call (default: 0.75 x the model's step)", type=float),
    Option("--explain-top", "features published per anomalous target", type=int, default=3),
    Option("--workers", "concurrent scrapes", type=int, default=32),
    Option("--bearer-token-file", "file with a bearer token for scrapes and the Prometheus API"),
    Option("--basic-auth-user", "basic-auth user for scrapes and the Prometheus API"),
    Option("--basic-auth-password-file", "file with the basic-auth password"),
    Option("--ca-file", "CA bundle to verify TLS"),
    Option("--cert-file", "client certificate (mTLS)"),
    Option("--key-file", "client key (mTLS)"),
    Option("--insecure-skip-verify", "do not verify TLS certificates", boolean=True, default=False),
    Option("--state-file", "JSON file where each instance's learned baseline is kept across restarts ('' = none)", default="coredns-anomaly-state.json"),
    Option("--log-level", "debug, info, warning, error", default="info"),
    # Hostile input (docs/exporter.md "Hostile targets and the listener"); the defaults are
    # scrape.DEFAULT_SAMPLE_LIMIT and page.MAX_PAGE_BYTES (not imported: the CLI stays light).
    Option("--sample-limit", "refuse a page with more samples than this, like Prometheus' sample_limit (0 = no limit)", type=int, default=20_000),
    Option("--body-size-limit", "refuse a page larger than this many bytes after decompression (0 = no limit)", type=int, default=20 * 1024 * 1024),
    Option("--follow-redirects", "same-host (scheme, host and port of the target), any-host, or never", default="same-host"),
    Option("--web-config-file", "TLS and basic auth for /metrics, in Prometheus' web-config format", aliases=("--web.config.file",)),
)  # fmt: skip


def register(sub: argparse._SubParsersAction) -> None:
    feats = sub.add_parser("features", help="print the feature table (docs/features.md)")
    feats.set_defaults(handler=_features)
    ex = sub.add_parser(
        "exporter",
        help="score CoreDNS instances with the model and serve the coredns_anomaly series",
        description="Flags win over env vars (COREDNS_ANOMALY_<FLAG>), which win over --config.",
    )
    ex.add_argument("--config", help="YAML file whose keys are the flags with underscores")
    for o in OPTIONS:
        names = (o.flag, *o.aliases)
        if o.boolean:
            ex.add_argument(*names, action="store_true", default=None, help=o.help)
        elif o.many:
            ex.add_argument(*names, action="append", default=None, help=o.help)
        else:
            ex.add_argument(*names, type=o.type, default=None, help=o.help)
    ex.add_argument(
        "--check", action="store_true", help="load and check the bundle, print it, exit"
    )
    ex.set_defaults(handler=_exporter)


def resolve(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Merge flags > env > config file > defaults into one dict keyed like the YAML."""
    from coredns_anomaly.cli import UsageError

    env = os.environ if env is None else env
    file_cfg: dict[str, Any] = {}
    path = getattr(args, "config", None) or env.get("COREDNS_ANOMALY_CONFIG")
    if path:
        try:
            file_cfg = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UsageError(f"--config {path}: {exc}") from exc
        if not isinstance(file_cfg, dict):
            raise UsageError(f"--config {path}: expected a mapping of option: value")
        known = {o.key for o in OPTIONS} | {"targets"}
        unknown = sorted(set(file_cfg) - known)
        if unknown:
            raise UsageError(f"--config {path}: unknown keys {unknown}; known: {sorted(known)}")
    out: dict[str, Any] = {}
    for o in OPTIONS:
        value = getattr(args, o.key, None)
        if value is None and o.env in env:
            raw = env[o.env]
            value = [v for v in raw.split(",") if v.strip()] if o.many else raw
            if o.boolean:
                value = raw.strip().lower() in ("1", "true", "yes")
        if value is None:
            value = file_cfg.get(o.key, file_cfg.get(o.key + "s") if o.many else None)
        if value is None:
            value = [] if o.many else o.default
        try:
            out[o.key] = (
                [str(v) for v in value]
                if o.many
                else (None if value is None else o.type(value) if not o.boolean else bool(value))
            )
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{o.flag}: {exc}") from exc
    return out


def settings_from(cfg: dict[str, Any]):
    from coredns_anomaly.cli import UsageError

    from .scrape import HttpOptions
    from .service import Settings
    from .shard import parse_shard

    def read(path: str | None, what: str) -> str | None:
        if not path:
            return None
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise UsageError(f"{what} {path}: {exc}") from exc

    try:
        shard = parse_shard(cfg["shard"])
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    password = read(cfg["basic_auth_password_file"], "--basic-auth-password-file")
    if cfg["basic_auth_user"] and password is None:
        raise UsageError("--basic-auth-user needs --basic-auth-password-file")
    if bool(cfg["cert_file"]) != bool(cfg["key_file"]):
        raise UsageError("--cert-file and --key-file go together")
    if cfg["follow_redirects"] not in ("same-host", "any-host", "never"):
        raise UsageError(
            f"--follow-redirects must be same-host, any-host or never, got {cfg['follow_redirects']!r}"
        )
    for key in ("sample_limit", "body_size_limit"):
        if cfg[key] < 0:
            raise UsageError(f"--{key.replace('_', '-')} must be >= 0 (0: no limit)")
    http = HttpOptions(
        bearer_token=read(cfg["bearer_token_file"], "--bearer-token-file"),
        basic_auth=(cfg["basic_auth_user"], password or "") if cfg["basic_auth_user"] else None,
        ca_file=cfg["ca_file"],
        cert=(cfg["cert_file"], cfg["key_file"]) if cfg["cert_file"] else None,
        insecure_skip_verify=cfg["insecure_skip_verify"],
    )
    return Settings(
        model=cfg["model"], targets=cfg["target"], targets_file=cfg["targets_file"],
        prometheus_url=cfg["prometheus_url"], prometheus_selector=cfg["prometheus_selector"],
        prometheus_instance_label=cfg["prometheus_instance_label"], shard=shard,
        listen=cfg["listen"], scrape_timeout=cfg["scrape_timeout"], explain_top=cfg["explain_top"],
        workers=cfg["workers"], http=http, state_file=cfg["state_file"] or None,
        sample_limit=cfg["sample_limit"],
        body_size_limit=cfg["body_size_limit"] or 2**62,
        follow_redirects=cfg["follow_redirects"], web_config_file=cfg["web_config_file"] or None,
    )  # fmt: skip


def _exporter(args: argparse.Namespace) -> int:
    from .bundle import BundleError, load_bundle
    from .runtime import RuntimeLoadError, runtime_name
    from .server import serve
    from .service import Exporter
    from .webconfig import WebConfigError, WebConfigFile

    cfg = resolve(args)
    logging.getLogger().setLevel(getattr(logging, str(cfg["log_level"]).upper(), logging.INFO))
    log = logging.getLogger("coredns_anomaly.exporter")
    settings = settings_from(cfg)
    try:
        bundle = load_bundle(settings.model)
        rt = runtime_name()
    except (BundleError, RuntimeLoadError) as exc:
        print(f"coredns-anomaly exporter: cannot serve the model: {exc}", file=sys.stderr)
        return 1
    if args.check:
        print(
            f"ok: {bundle.kind} {bundle.version} window {bundle.window} x {bundle.step_seconds:g}s, {bundle.n_features} features, sha256 {bundle.sha256}, runtime {rt}"
        )
        return 0
    try:
        exporter = Exporter(settings, bundle)
        exporter.check_step()
    except ValueError as exc:
        print(f"coredns-anomaly exporter: {exc}", file=sys.stderr)
        return 2
    try:
        web = WebConfigFile(settings.web_config_file) if settings.web_config_file else None
    except WebConfigError as exc:
        print(f"coredns-anomaly exporter: {exc}", file=sys.stderr)
        return 2
    try:
        httpd, _ = serve(exporter, settings.listen, web)
    except OSError as exc:
        print(
            f"coredns-anomaly exporter: cannot listen on {settings.listen}: {exc}", file=sys.stderr
        )
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: exporter.reload_requested.set())
    scheme = "https" if web and web.current.ssl_context else "http"
    log.info(
        "serving %s model (sha256 %s, %s) on %s://%s/metrics%s, step %.3gs",
        bundle.kind, bundle.sha256[:12], rt, scheme, settings.listen,
        " (basic auth)" if web and web.current.users else "", bundle.step_seconds,
    )  # fmt: skip
    try:
        exporter.run_forever(stop)  # returns within a scrape deadline of SIGTERM
    finally:
        httpd.shutdown()
        httpd.server_close()
        exporter.close()
    return 0


def features_doc() -> str:
    from .features import feature_table_markdown

    return (
        "# Features\n\n"
        "Generated from `exporter/features.py` by `coredns-anomaly features > docs/features.md`;\n"
        "a test fails when this file is stale. Rates are one-step counter deltas divided by the\n"
        "step (resets handled); a source family a page lacks masks the feature (NaN), and lazily\n"
        "created counters count as 0 while their plugin is enabled. Where two names are given,\n"
        "the first is CoreDNS 1.11+ and the second the older name.\n\n" + feature_table_markdown()
    )


def _features(args: argparse.Namespace) -> int:
    print(features_doc(), end="")
    return 0
