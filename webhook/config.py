"""Webhook settings: defaults < config file (YAML) < environment < command-line flags.

Stdlib + PyYAML only: the gunicorn master imports this from the shipped gunicorn.conf.py before
any worker exists, and must not import prometheus_client before PROMETHEUS_MULTIPROC_DIR is set.
Every setting ``name`` has the environment variable ``COREDNS_ANOMALY_WEBHOOK_<NAME>``; the CLI
passes its flags to gunicorn's workers through those variables, so all processes resolve the
same settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from coredns_anomaly.contracts.names import FAULT_CLASSES
from coredns_anomaly.webhook.matchers import (
    DEFAULT_WEAK_MATCHERS,
    OWN_ALERTNAMES,
    MatcherError,
    parse_matchers,
)

ENV_PREFIX = "COREDNS_ANOMALY_WEBHOOK_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"

# A verdict class the model knows (contracts/names.py FAULT_CLASSES) can train it; any other
# name is still accepted.
DEFAULT_CLASSES = FAULT_CLASSES


class ConfigError(ValueError):
    """A setting the user must fix; the CLI turns it into a UsageError."""


WORKER_CLASSES = ("gevent", "gthread", "sync")


@dataclass(frozen=True)
class Settings:
    listen: str = "0.0.0.0:9095"
    db: str = "webhook.db"
    workers: int = 2
    threads: int = 8
    # gevent: one event loop per worker, a connection costs a greenlet, so slow or idle clients
    # cannot take the slots deliveries need (docs/webhook.md "Slow clients"). gthread and sync
    # give each connection a thread or a process: only behind a buffering proxy.
    worker_class: str = "gevent"
    worker_connections: int = 2000
    # A connection must deliver its request line and headers (after the TLS handshake) within
    # this many seconds, and an idle keep-alive connection is closed after it (gunicorn's
    # keepalive, which its gevent worker applies to reading each request's headers).
    header_timeout: int = 5
    timeout: int = 30
    max_body_bytes: int = 4 * 1024 * 1024
    # Prometheus web-config style YAML: tls_server_config and basic_auth_users (webconfig.py).
    web_config_file: str = ""
    # Credentials, as Alertmanager's http_config: secrets in files (or env values, never flags).
    bearer_token_file: str = ""
    bearer_token: str = field(default="", repr=False)
    basic_auth_username: str = ""
    basic_auth_password_file: str = ""
    basic_auth_password: str = field(default="", repr=False)
    allow_unauthenticated: bool = False
    metrics_require_auth: bool = False
    metrics_dir: str = ""
    prometheus_url: str = ""
    own_alertnames: str = OWN_ALERTNAMES
    weak_matchers: str = DEFAULT_WEAK_MATCHERS
    anomaly_classes: tuple[str, ...] = DEFAULT_CLASSES
    access_log: bool = False
    log_level: str = "info"

    def to_env(self, only: set[str] | None = None) -> dict[str, str]:
        """Settings as the environment variables load_settings() reads back."""
        env = {}
        for f in fields(self):
            if only is not None and f.name not in only:
                continue
            env[ENV_PREFIX + f.name.upper()] = _to_text(getattr(self, f.name))
        return env

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


_FIELDS = {f.name: f for f in fields(Settings)}
_SECRET_VALUES = {"bearer_token", "basic_auth_password"}


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _coerce(name: str, value: Any, origin: str) -> Any:
    default = _FIELDS[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if isinstance(default, int):
            if isinstance(value, bool):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def load_settings(
    overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Resolve settings; ``overrides`` are command-line values (None means not given)."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_path = (overrides or {}).get("config") or env.get(CONFIG_ENV, "")
    if config_path:
        values.update(_read_config_file(config_path))
    for name in _FIELDS:
        key = ENV_PREFIX + name.upper()
        if key in env:
            values[name] = _coerce(name, env[key], f"environment variable {key}")
    for name, value in (overrides or {}).items():
        if name == "config" or value is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    settings = replace(Settings(), **values)
    _validate(settings)
    return settings


def _read_config_file(path: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of settings")
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise ConfigError(
                f"config file {path}: unknown setting {key!r} (known: {', '.join(sorted(_FIELDS))})"
            )
        if name in _SECRET_VALUES:
            raise ConfigError(f"config file {path}: put {key} in a file and set {key}_file instead")
        out[name] = _coerce(name, value, f"config file {path}: {key}")
    return out


def _validate(s: Settings) -> None:
    try:
        host, port = s.host_port
    except ValueError:
        raise ConfigError(f"listen address {s.listen!r} must be HOST:PORT") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"listen port {port} out of range")
    if s.workers < 1 or s.threads < 1:
        raise ConfigError("workers and threads must be at least 1")
    if s.worker_class not in WORKER_CLASSES:
        raise ConfigError(
            f"worker_class {s.worker_class!r}: use {', '.join(WORKER_CLASSES)} "
            "(gevent unless a buffering proxy is in front)"
        )
    if s.worker_connections < 1:
        raise ConfigError("worker_connections must be at least 1")
    if not 1 <= s.header_timeout <= 3600:
        raise ConfigError("header_timeout must be between 1 and 3600 seconds")
    if s.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    if s.basic_auth_password_file and s.basic_auth_password:
        raise ConfigError("set either basic_auth_password_file or basic_auth_password, not both")
    if s.bearer_token_file and s.bearer_token:
        raise ConfigError("set either bearer_token_file or bearer_token, not both")
    # Secret files are trimmed and refused when empty (auth.py); a value from the environment
    # is used as given, so one that is only whitespace is a mistake, not a password.
    if s.basic_auth_password and not s.basic_auth_password.strip():
        raise ConfigError(
            "basic auth password from the environment (COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_PASSWORD)"
            " is empty or only whitespace"
        )
    if s.bearer_token and not s.bearer_token.strip():
        raise ConfigError(
            "bearer token from the environment (COREDNS_ANOMALY_WEBHOOK_BEARER_TOKEN) is empty or "
            "only whitespace"
        )
    if s.basic_auth_username and not s.basic_auth_username.strip():
        raise ConfigError("basic auth username is only whitespace")
    has_password = bool(s.basic_auth_password_file or s.basic_auth_password)
    if bool(s.basic_auth_username) != has_password:
        raise ConfigError("basic auth needs both a username and a password (file)")
    if s.own_alertnames:
        import re

        try:
            re.compile(s.own_alertnames)
        except re.error as exc:
            raise ConfigError(f"own_alertnames is not a valid regular expression: {exc}") from None
    try:
        parse_matchers(s.weak_matchers)
    except MatcherError as exc:
        raise ConfigError(f"weak_matchers: {exc}") from None


def check_private_dir(path: str, what: str = "metrics directory", create: bool = True) -> None:
    """Make ``path`` a directory only this user can use, or refuse one that is not.

    prometheus_client's multiprocess files are mmapped, written and (at start) deleted there: in
    a directory another user can write (e.g. pre-created 0777 in /tmp), that user could plant
    symlinks or files and read or falsify the metrics. A missing directory is created 0700; an
    existing one must be a real directory, owned by us, with no group or other permissions.
    """
    import stat

    if create:
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"cannot create {what} {path}: {exc.strerror}") from None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if create:
            raise ConfigError(f"{what} {path} vanished while it was being created") from None
        return
    except OSError as exc:
        raise ConfigError(f"cannot inspect {what} {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{what} {path} is not a directory (a symlink or a file); refusing it")
    if st.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} {path} belongs to uid {st.st_uid}, not to this process (uid {os.geteuid()}); "
            "refusing it: remove it or set --metrics-dir to a directory of your own"
        )
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}: group or others can use it; "
            f"refusing it: chmod 700 {path}, or set --metrics-dir to a private directory"
        )


def default_metrics_dir(s: Settings) -> str:
    """Where the multiprocess metrics go when neither metrics_dir nor the variable is set."""
    import tempfile

    return s.metrics_dir or os.path.join(
        tempfile.gettempdir(), f"coredns-anomaly-webhook-metrics-{s.host_port[1]}"
    )


def has_credentials(s: Settings) -> bool:
    """A bearer token or basic auth in the settings (web-config users: auth.Credentials.open)."""
    return bool(s.bearer_token_file or s.bearer_token or s.basic_auth_username)
