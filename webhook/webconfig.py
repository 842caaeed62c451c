"""``--web-config-file``: TLS and basic-auth users in the Prometheus web-config format.

The same YAML file Prometheus, Alertmanager and the exporters read (exporter-toolkit's
``--web.config.file``), so operators reuse what they know and have:

    tls_server_config:
      cert_file: webhook.crt        # relative paths are relative to this file
      key_file: webhook.key
      client_auth_type: RequireAndVerifyClientCert   # optional: mutual TLS
      client_ca_file: clients-ca.crt
      min_version: TLS12            # default TLS12, like exporter-toolkit
    basic_auth_users:
      oncall: $2y$10$...            # bcrypt hash (htpasswd -nBC 10 oncall)

The subset implemented is the one Python's ``ssl`` can honour; anything else (cipher_suites,
http_server_config, inline certificates, ...) is refused with a message naming it, because a
setting silently ignored is worse for security than one refused. Stdlib + PyYAML; bcrypt only
when ``basic_auth_users`` is present. The master reads this file (gunicorn.conf.py sets TLS from
it), the workers read it for the users: both resolve the same file.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coredns_anomaly.webhook.config import ConfigError

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's names; the two that only request (not verify) a certificate have no
# equivalent in Python's ssl module.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
}
_TOP_KEYS = {"tls_server_config", "basic_auth_users"}
_BCRYPT = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}\Z")


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str
    key_file: str
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = ""

    @property
    def cert_reqs(self) -> int:
        return int(_CLIENT_AUTH[self.client_auth_type])

    def apply(self, ctx: ssl.SSLContext) -> None:
        """Version bounds on a context gunicorn built from cert/key/CA (gunicorn.conf.py)."""
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]

    def context(self) -> ssl.SSLContext:
        """A complete server context (the dev server; and the load-time check of the files)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=self.client_ca_file)
        ctx.verify_mode = ssl.VerifyMode(self.cert_reqs)
        self.apply(ctx)
        return ctx


@dataclass(frozen=True)
class WebConfig:
    tls: TLSConfig | None = None
    # user -> bcrypt hash
    basic_auth_users: dict[str, bytes] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    """Read and check the file; ConfigError with a one-line message for anything wrong."""
    import yaml

    if not path:
        return WebConfig()
    where = f"web config file {path}"
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid YAML: {_one_line(exc)}") from None
    if data is None:
        return WebConfig()
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = sorted(str(k) for k in data if k not in _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unsupported key(s) {', '.join(unknown)} (supported: "
            f"{', '.join(sorted(_TOP_KEYS))})"
        )
    base = Path(path).resolve().parent
    tls = _tls(data.get("tls_server_config"), base, where)
    users = _users(data.get("basic_auth_users"), where)
    return WebConfig(tls=tls, basic_auth_users=users)


def _tls(section: Any, base: Path, where: str) -> TLSConfig | None:
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: tls_server_config must be a mapping")
    unknown = sorted(str(k) for k in section if k not in _TLS_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: tls_server_config: unsupported key(s) {', '.join(unknown)} "
            f"(supported: {', '.join(sorted(_TLS_KEYS))})"
        )
    values: dict[str, str] = {}
    for key, value in section.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: tls_server_config.{key} must be a non-empty string")
        values[key] = value.strip()
    for key in ("cert_file", "key_file"):
        if key not in values:
            raise ConfigError(f"{where}: tls_server_config needs both cert_file and key_file")
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in values:
            values[key] = str(base / values[key])
    auth = values.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"{where}: client_auth_type {auth!r} is not supported (use {', '.join(_CLIENT_AUTH)})"
        )
    if auth != "NoClientCert" and "client_ca_file" not in values:
        raise ConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
    for key in ("min_version", "max_version"):
        if key in values and values[key] not in _TLS_VERSIONS:
            raise ConfigError(
                f"{where}: {key} {values[key]!r}: use one of {', '.join(_TLS_VERSIONS)}"
            )
    tls = TLSConfig(**values)
    if tls.max_version and _TLS_VERSIONS[tls.max_version] < _TLS_VERSIONS[tls.min_version]:
        raise ConfigError(f"{where}: max_version is below min_version")
    try:
        tls.context()  # the files exist, parse and match, now rather than at the first client
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot load the TLS files: {_one_line(exc)}") from None
    return tls


def _users(section: Any, where: str) -> dict[str, bytes]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: basic_auth_users must be a mapping of user: bcrypt hash")
    users = {}
    for user, hashed in section.items():
        if not isinstance(user, str) or not user.strip() or ":" in user:
            raise ConfigError(f"{where}: basic_auth_users: bad user name {user!r}")
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed.strip()):
            raise ConfigError(
                f"{where}: basic_auth_users.{user}: not a bcrypt hash (make one with "
                "`htpasswd -nBC 10 USER` or python -c 'import bcrypt; "
                'print(bcrypt.hashpw(b"PASSWORD", bcrypt.gensalt()).decode())\')'
            )
        users[user] = hashed.strip().encode("ascii")
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"{where}: basic_auth_users need the bcrypt package (pip install bcrypt)"
            ) from None
    return users


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


class DeadlineContext:
    """An SSLContext whose ``wrap_socket`` finishes the TLS handshake within ``timeout`` seconds.

    gevent's server wraps each accepted socket with ``wrap_socket`` and the handshake then waits
    as long as the client likes: a client that connects and never sends its ClientHello would
    hold a connection slot forever (the header deadline only starts after the handshake).
    Here the handshake runs at once, under a gevent.Timeout in gevent workers (a total deadline)
    or a socket timeout elsewhere (per read); a client that misses it is dropped quietly.
    Everything else is delegated to the wrapped context.
    """

    def __init__(self, ctx: ssl.SSLContext, timeout: float) -> None:
        self._ctx = ctx
        self.timeout = timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def wrap_socket(self, sock: Any, server_side: bool = True, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["do_handshake_on_connect"] = False
        tls = self._ctx.wrap_socket(sock, server_side=server_side, **kwargs)
        from coredns_anomaly.webhook.coop import cooperative

        if cooperative():
            import gevent

            try:
                with gevent.Timeout(self.timeout):
                    tls.do_handshake()
            except (gevent.Timeout, OSError) as exc:
                # Not an error worth a traceback in the log: a scanner, a plain-HTTP client on
                # the TLS port, or a slow client. Ending the greenlet quietly closes the socket.
                tls.close()
                raise gevent.GreenletExit(f"TLS handshake failed: {exc or 'timed out'}") from None
            return tls
        previous = tls.gettimeout()
        tls.settimeout(self.timeout)
        try:
            tls.do_handshake()
        finally:
            tls.settimeout(previous)
        return tls
