"""Credentials as Alertmanager sends them (``http_config``): bearer token and/or basic auth.

Secret files are read like Prometheus' common config does (surrounding whitespace trimmed), so
the same file can be given to Alertmanager's ``credentials_file``/``password_file`` and to us.
Comparisons hash both sides and use ``hmac.compare_digest``: constant time, length included.

Users from a Prometheus-style web config (``basic_auth_users``, bcrypt hashes; webconfig.py) are
accepted as well, wherever these credentials are: the webhook's own token and user stay the
simple way for Alertmanager, the web config lets one file carry TLS and people's logins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coredns_anomaly.webhook.config import ConfigError, Settings
from coredns_anomaly.webhook.coop import Offload


def _digest(value: str | bytes) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return hashlib.sha256(value).digest()


def _read_secret(path: str, what: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {path} is not UTF-8 text") from None
    if not secret:
        raise ConfigError(f"{what} file {path} is empty")
    return secret


class BcryptUsers:
    """web-config ``basic_auth_users``: bcrypt hashes, checked off the event loop, cached.

    bcrypt costs ~75 ms of CPU per check (cost 10) by design. Alertmanager sends its password on
    every delivery, so a successful (user, password) is remembered (as a SHA-256, never in
    clear) like exporter-toolkit does. Failed checks are not cached; they run on one native
    thread per worker at a time (coop.Offload), so wrong passwords sent in a loop cost at most
    a core per worker and never stall the event loop. An unknown user is checked against a
    dummy hash, so timing does not tell which users exist.
    """

    _MAX_CACHED = 256

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._ok: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._offload = Offload(1)
        self._dummy: bytes | None = None

    def __bool__(self) -> bool:
        return bool(self._users)

    def check(self, user: bytes, password: bytes) -> str | None:
        """The user name if the pair is valid, else None."""
        key = hashlib.sha256(user + b"\0" + password).digest()
        hit = self._ok.get(key)
        if hit is not None:
            return hit
        import bcrypt

        name = user.decode("utf-8", "surrogateescape")
        hashed = self._users.get(name)
        if hashed is None:
            if self._dummy is None:
                self._dummy = bcrypt.hashpw(b"dummy", bcrypt.gensalt(10))
            hashed, name = self._dummy, ""
        ok = self._offload(bcrypt.checkpw, password, hashed)
        if not (ok and name):
            return None
        with self._lock:
            if len(self._ok) >= self._MAX_CACHED:
                self._ok.clear()
            self._ok[key] = name
        return name


@dataclass(frozen=True)
class Credentials:
    bearer: bytes | None  # sha256 of the token
    basic_user: bytes | None  # sha256 of the username
    basic_password: bytes | None
    username: str = ""
    web_users: BcryptUsers | None = None  # --web-config-file basic_auth_users

    @property
    def open(self) -> bool:
        return self.bearer is None and self.basic_user is None and not self.web_users

    @classmethod
    def from_settings(cls, s: Settings) -> Credentials:
        token = s.bearer_token or (
            _read_secret(s.bearer_token_file, "bearer token") if s.bearer_token_file else ""
        )
        if s.bearer_token and not s.bearer_token.strip():
            raise ConfigError("bearer token is empty")
        password = ""
        if s.basic_auth_username:
            password = s.basic_auth_password or _read_secret(
                s.basic_auth_password_file, "basic auth password"
            )
        web_users = None
        if s.web_config_file:
            from coredns_anomaly.webhook.webconfig import load_web_config

            users = load_web_config(s.web_config_file).basic_auth_users
            web_users = BcryptUsers(users) if users else None
        return cls(
            bearer=_digest(token.strip()) if token else None,
            basic_user=_digest(s.basic_auth_username) if s.basic_auth_username else None,
            basic_password=_digest(password) if s.basic_auth_username else None,
            username=s.basic_auth_username,
            web_users=web_users,
        )

    def kinds(self) -> list[str]:
        """The configured schemes, for the start-up log line."""
        out = ["bearer"] if self.bearer is not None else []
        if self.basic_user is not None:
            out.append("basic")
        if self.web_users:
            out.append("web-config basic_auth_users")
        return out

    def challenge(self) -> str:
        """WWW-Authenticate value: Basic when configured, so a browser prompts for it."""
        if self.basic_user is not None or self.web_users:
            return 'Basic realm="coredns-anomaly webhook", charset="UTF-8"'
        return 'Bearer realm="coredns-anomaly webhook"'

    def check(self, authorization: str | None) -> str | None:
        """The principal ('basic:<user>' or 'bearer') for a valid Authorization header, else None."""
        if self.open:
            return "anonymous"
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer" and self.bearer is not None:
            return "bearer" if hmac.compare_digest(_digest(value), self.bearer) else None
        if scheme == "basic" and (self.basic_user is not None or self.web_users):
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return None
            user, sep, password = decoded.partition(b":")
            if not sep:
                return None
            if self.basic_user is not None and self.basic_password is not None:
                user_ok = hmac.compare_digest(_digest(user), self.basic_user)
                password_ok = hmac.compare_digest(_digest(password), self.basic_password)
                if user_ok & password_ok:
                    return f"basic:{self.username}"
            if self.web_users:
                name = self.web_users.check(user, password)
                if name is not None:
                    return f"basic:{name}"
        return None


class CsrfTokens:
    """Stateless CSRF tokens for the page's forms: HMAC(secret, principal | issued-at).

    The secret lives in the store, so every gunicorn worker accepts every other's tokens.
    Basic auth is sent by browsers on cross-site form posts too, hence the need.
    """

    def __init__(self, secret: bytes, max_age_s: int = 12 * 3600) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def _mac(self, principal: str, issued: int) -> str:
        msg = f"{principal}|{issued}".encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def issue(self, principal: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        return f"{issued}.{self._mac(principal, issued)}"

    def valid(self, principal: str, token: str, now: float | None = None) -> bool:
        issued_text, _, mac = (token or "").partition(".")
        if not issued_text.isdigit() or len(issued_text) > 12:
            return False
        issued = int(issued_text)
        age = (now if now is not None else time.time()) - issued
        if not -60 <= age <= self.max_age_s:
            return False
        return hmac.compare_digest(
            mac.encode("ascii", "replace"), self._mac(principal, issued).encode()
        )
