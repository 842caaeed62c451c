"""`--web-config-file` (alias `--web.config.file`): TLS and basic auth for our own listener.

The file has the format of Prometheus' exporter-toolkit, which node_exporter, Prometheus and
Alertmanager read, so one file and one habit serve them all:

    tls_server_config:
      cert_file: /etc/tls/tls.crt
      key_file: /etc/tls/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional (mTLS), with client_ca_file
      client_ca_file: /etc/tls/ca.crt
      min_version: TLS12                              # default TLS12
    basic_auth_users:
      prometheus: $2b$12$...                         # bcrypt hash (htpasswd -nBC 12 '' | tr -d ':\\n')
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}

Keys we cannot honour (cipher_suites, inline cert/key, ...) are refused by name, never ignored:
a security setting that silently does nothing is worse than an error. The file and the files
it names are re-read when they change (certificate rotation needs no restart); an edit that
does not load keeps the last good configuration and is logged.

bcrypt costs ~70 ms a check at cost 10, so a successful check is cached (keyed by a hash of
user, password and stored hash, as exporter-toolkit does), checks run at most two at a time, and
an unknown user is checked against a dummy hash so its answer takes as long as a known one's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("coredns_anomaly.exporter")

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}  # fmt: skip
TOP_KEYS = {"tls_server_config", "basic_auth_users", "http_server_config"}
# exporter-toolkit lets these response headers be set, and no others
HEADERS = {
    "strict-transport-security": "Strict-Transport-Security",
    "x-content-type-options": "X-Content-Type-Options",
    "x-frame-options": "X-Frame-Options",
    "x-xss-protection": "X-XSS-Protection",
    "content-security-policy": "Content-Security-Policy",
}
RELOAD_CHECK_SECONDS = 1.0
_DUMMY_HASH = b"$2b$10$Y1v3m/lfHF98Z/v7o557be9ZVJB.B9rcq21pVpJ6bP0JcJxc/agBu"
_CACHE_MAX = 1024
_BCRYPT_SLOTS = threading.BoundedSemaphore(2)
# Paths anyone may probe (kubelet and Docker health checks carry no credentials); they tell
# nothing but "up" and "model loaded".
UNAUTHENTICATED_PATHS = frozenset({"/-/healthy", "/-/ready"})


class WebConfigError(ValueError):
    """The web config cannot be used; the message names the key and the fix."""


@dataclass
class WebConfig:
    path: str
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()
    files: tuple[str, ...] = ()  # every file it was built from, for change detection
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorized(self, header: str | None) -> bool:
        """Basic auth against the bcrypt hashes; True when no users are configured."""
        if not self.users:
            return True
        user, password = _basic(header)
        if user is None or password is None:
            return False
        stored = self.users.get(user)
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), stored or b""))).digest()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        import bcrypt

        with _BCRYPT_SLOTS:
            try:
                ok = bcrypt.checkpw(password.encode(), stored or _DUMMY_HASH)
            except ValueError:  # bcrypt >= 5 refuses passwords over 72 bytes
                ok = False
        ok = ok and stored is not None
        with self._lock:
            self._cache[key] = ok
            if len(self._cache) > _CACHE_MAX:
                self._cache.popitem(last=False)
        return ok


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or header[:6].lower() != "basic ":
        return None, None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = raw.partition(":")
    return (user, password) if sep else (None, None)


def load_web_config(path: str | os.PathLike) -> WebConfig:
    """Read and check the file; WebConfigError with one line naming what is wrong."""
    where = f"web config {path}"
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{where}: {exc}".replace("\n", " ")) from exc
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise WebConfigError(f"{where}: expected a mapping with {sorted(TOP_KEYS)}")
    unknown = sorted(set(map(str, doc)) - TOP_KEYS)
    if unknown:
        raise WebConfigError(f"{where}: unknown or unsupported keys {unknown}")
    base = Path(path).resolve().parent
    cfg = WebConfig(str(path))
    files = [str(path)]
    tls = _mapping(doc.get("tls_server_config"), f"{where}: tls_server_config")
    if tls:
        cfg.ssl_context = _ssl_context(tls, base, where, files)
    users = _mapping(doc.get("basic_auth_users"), f"{where}: basic_auth_users")
    cfg.users = _users(users, where) if users else {}
    http = _mapping(doc.get("http_server_config"), f"{where}: http_server_config")
    cfg.headers = _headers(http, where) if http else ()
    cfg.files = tuple(files)
    return cfg


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where}: expected a mapping")
    return value


def _ssl_context(tls: dict, base: Path, where: str, files: list[str]) -> ssl.SSLContext:
    unknown = sorted(set(map(str, tls)) - TLS_KEYS)
    if unknown:
        raise WebConfigError(
            f"{where}: tls_server_config keys {unknown} are not supported here (supported: {sorted(TLS_KEYS)})"
        )
    path = lambda k: str(base / str(tls[k])) if tls.get(k) else None  # noqa: E731
    cert, key = path("cert_file"), path("key_file")
    if not cert or not key:
        raise WebConfigError(f"{where}: tls_server_config needs cert_file and key_file")
    auth = str(tls.get("client_auth_type") or "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"{where}: client_auth_type {auth!r} is not supported (use one of {sorted(CLIENT_AUTH)}; "
            "RequestClientCert and RequireAnyClientCert do not verify the client and are refused)"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for k, attr, default in (("min_version", "minimum_version", "TLS12"), ("max_version", "maximum_version", "TLS13")):  # fmt: skip
        v = str(tls.get(k) or default)
        if v not in TLS_VERSIONS:
            raise WebConfigError(f"{where}: {k} {v!r}: use one of {sorted(TLS_VERSIONS)}")
        setattr(ctx, attr, TLS_VERSIONS[v])
    try:
        ctx.load_cert_chain(cert, key)
        files += [cert, key]
        ca = path("client_ca_file")
        if CLIENT_AUTH[auth] != ssl.CERT_NONE:
            if not ca:
                raise WebConfigError(f"{where}: client_auth_type {auth} needs client_ca_file")
            ctx.load_verify_locations(ca)
            files.append(ca)
        ctx.verify_mode = CLIENT_AUTH[auth]
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{where}: tls_server_config: {exc}") from exc
    return ctx


def _users(users: dict, where: str) -> dict[str, bytes]:
    try:
        import bcrypt
    except ImportError as exc:
        raise WebConfigError(
            f"{where}: basic_auth_users needs the bcrypt package (pip install bcrypt)"
        ) from exc
    out = {}
    for user, h in users.items():
        h = str(h or "").encode()
        try:
            bcrypt.checkpw(b"", h)  # a malformed hash raises here, not at the first request
        except ValueError as exc:
            raise WebConfigError(
                f"{where}: basic_auth_users {user!r}: not a bcrypt hash ({exc}); "
                "make one with: htpasswd -nBC 12 '' | tr -d ':\\n'"
            ) from exc
        out[str(user)] = h
    return out


def _headers(http: dict, where: str) -> tuple[tuple[str, str], ...]:
    out = []
    for k, v in http.items():
        if k == "http2":  # no HTTP/2 here; either value is fine and means HTTP/1.1
            continue
        if k != "headers":
            raise WebConfigError(f"{where}: http_server_config key {k!r} is not supported")
        for name, value in _mapping(v, f"{where}: http_server_config.headers").items():
            canon = HEADERS.get(str(name).lower())
            if canon is None or not isinstance(value, str) or "\n" in value or "\r" in value:
                raise WebConfigError(
                    f"{where}: header {name!r}: only {sorted(HEADERS.values())} with one-line values"
                )
            out.append((canon, value))
    return tuple(out)


def _stamp(files: tuple[str, ...]) -> tuple:
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class WebConfigFile:
    """The current WebConfig, re-read when the file or a file it names changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.current = load_web_config(path)  # a bad file at start is fatal (the CLI exits)
        self._stamp = _stamp(self.current.files)
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        self.failed = False

    def get(self) -> WebConfig:
        now = time.monotonic()
        if now - self._checked < RELOAD_CHECK_SECONDS:
            return self.current
        with self._lock:
            if now - self._checked < RELOAD_CHECK_SECONDS:
                return self.current
            self._checked = now
            stamp = _stamp(self.current.files)
            if stamp == self._stamp:
                return self.current
            self._stamp = stamp
            try:
                self.current = load_web_config(self.path)
                self._stamp = _stamp(self.current.files)
                self.failed = False
                log.info("web config %s reloaded", self.path)
            except WebConfigError as exc:
                if not self.failed:
                    log.error("%s (keeping the last good web config)", exc)
                self.failed = True
        return self.current
