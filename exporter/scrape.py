"""Concurrent scrapes of CoreDNS /metrics, each under one hard deadline and hard limits.

Every failure becomes a reason (timeout, connection, http_status, redirect, too_large,
sample_limit) instead of an exception, so one sick or hostile target never stalls, blinds or
crashes the step for the others:

- One deadline per scrape covers connecting, the TLS handshake, headers, every redirect and the
  body. Socket timeouts alone cannot do that (each recv restarts them, so one byte a second
  holds a scrape forever); a late scrape's sockets are shut down when its deadline passes
  (exporter/deadline.py) and it is reported as a timeout without waiting for its thread.
- A target that was late once is not waited for again: the step ends as soon as the others
  have answered (or at the deadline), and takes the late one's page only if it is in by then.
  Its scrape still runs to its own deadline in the background, and after RELEASE_STEPS scrapes
  in time it is waited for again. So a persistently slow target costs the step its deadline
  once, not every step, and a healthy fleet's scores are not delayed by it.
- A target whose previous scrape is somehow still running (a name lookup stuck in libc) is not
  scraped again: it is a timeout at once, so it cannot take a second worker.
- Redirects stay on the target's scheme://host:port unless `--follow-redirects any-host`;
  after 10 hops the scrape fails, like Go's client. Credentials never follow to another host.
- A body over `max_bytes` or with more samples than `sample_limit` (Prometheus' setting of the
  same name) is refused before it is parsed, so a huge page costs a download, not every step.
- Cookies are never kept: one target must not be able to make the others' requests fail.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from .deadline import Deadline, Watchdog, Workers
from .page import MAX_PAGE_BYTES
from .targets import Target

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10  # Go's http.Client, which Prometheus uses, stops after 10
REDIRECT_POLICIES = ("same-host", "any-host", "never")
# A CoreDNS page has ~330 samples, a few thousand with many zones; 20,000 leaves headroom and
# keeps a hostile page's parse cost per step to tens of milliseconds.
DEFAULT_SAMPLE_LIMIT = 20_000
# A scrape whose sockets were shut down ends within milliseconds; one still running this long
# after is stuck where no socket can reach it (a name lookup), and its target is not scraped again.
STUCK_SECONDS = 1.0
RELEASE_STEPS = 3  # scrapes in time before a once-late target is waited for again


@dataclass
class Fetched:
    target: Target
    ts: float  # when the scrape started (the step's time for this target)
    duration: float
    text: str | None = None
    reason: str = ""  # set when text is None
    message: str = ""
    waited: bool = True  # False for a once-late target the step did not wait for


@dataclass(frozen=True)
class HttpOptions:
    """TLS and auth for scrapes and Prometheus API calls (flags of the same names)."""

    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    cert: tuple[str, str] | None = None
    insecure_skip_verify: bool = False
    # Proxies, .netrc and REQUESTS_CA_BUNDLE from the environment: off for the exporter (the
    # bundle would silently override `verify`), on for `collect` run from an engineer's shell.
    trust_env: bool = False

    def apply(self, s: requests.Session) -> None:
        s.trust_env = self.trust_env
        if self.bearer_token:
            s.headers["Authorization"] = f"Bearer {self.bearer_token}"
        if self.basic_auth:
            s.auth = self.basic_auth
        if self.cert:
            s.cert = self.cert

    @property
    def verify(self) -> bool | str:
        return False if self.insecure_skip_verify else (self.ca_file or True)


# -- every socket of a scrape is registered to its deadline --------------------------------
_current = threading.local()  # .deadline: the Deadline of the scrape running on this thread


class _Watched:
    """Registers the connection's socket with the running scrape's deadline: a new socket as
    soon as it is connected (before a TLS handshake), a kept-alive one before its response."""

    _watched_by: Deadline | None = None
    sock: object

    def _new_conn(self):
        sock = super()._new_conn()  # type: ignore[misc]
        d = getattr(_current, "deadline", None)
        if d is not None:
            d.watch(sock)
        self._watched_by = d
        return sock

    def getresponse(self, *args, **kwargs):
        d = getattr(_current, "deadline", None)
        if d is not None and self._watched_by is not d and self.sock is not None:
            d.watch(self.sock)  # type: ignore[arg-type]
            self._watched_by = d
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter on connection pools whose sockets a deadline can shut down."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def _origin(url: str) -> tuple[str, str, int]:
    p = urlsplit(url)
    scheme = p.scheme.lower()
    return scheme, (p.hostname or "").lower(), p.port or (443 if scheme == "https" else 80)


def _no_auth(r: requests.PreparedRequest) -> requests.PreparedRequest:
    return r  # stands in for the session's credentials on a redirect to another host


def count_samples(text: str, limit: int) -> int:
    """Sample lines (neither blank nor comments), counted exactly only when the line count
    could exceed `limit`: the common page costs one C-level count."""
    lines = text.count("\n") + 1
    if lines <= limit:
        return lines
    return sum(1 for ln in text.split("\n") if ln.strip() and not ln.lstrip().startswith("#"))


class Scraper:
    def __init__(
        self, timeout: float, http: HttpOptions | None = None, workers: int = 32,
        max_bytes: int = MAX_PAGE_BYTES, sample_limit: int = DEFAULT_SAMPLE_LIMIT,
        redirects: str = "same-host",
    ) -> None:  # fmt: skip
        if redirects not in REDIRECT_POLICIES:
            raise ValueError(f"redirects must be one of {REDIRECT_POLICIES}, got {redirects!r}")
        self.timeout, self.http, self.max_bytes = timeout, http or HttpOptions(), max_bytes
        self.sample_limit, self.redirects = sample_limit, redirects
        self.pool = Workers(workers, "scrape")
        # One adapter (one set of connection pools, one kept-alive connection per target)
        # shared by the workers' sessions, so idle connections do not grow with the workers.
        self._adapter = _Adapter(pool_connections=1024, pool_maxsize=2, max_retries=0)
        self._local = threading.local()
        self._running: dict[str, tuple[Future, Deadline]] = {}
        # instance -> scrapes in time since it was last late: the step does not wait for these
        self.late: dict[str, int] = {}
        self._late_lock = threading.Lock()
        self._watchdog = Watchdog("scrape-deadlines")  # for scrapes the step did not wait for

    def close(self) -> None:
        for _, d in self._running.values():
            d.expire()
        self.pool.shutdown()
        self._watchdog.stop()

    def _settle(self, instance: str, late: bool) -> None:
        """Record whether a scrape of `instance` was late (see the module docstring)."""
        with self._late_lock:
            if late:
                self.late[instance] = 0
            elif instance in self.late:
                self.late[instance] += 1
                if self.late[instance] >= RELEASE_STEPS:
                    del self.late[instance]

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["Accept"] = ACCEPT
            s.headers["User-Agent"] = "coredns-anomaly-exporter"
            s.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
            s.mount("http://", self._adapter)
            s.mount("https://", self._adapter)
            self.http.apply(s)
            self._local.session = s
        return s

    # -- the step ------------------------------------------------------------------------
    def fetch_all(
        self, targets: list[Target], stop: threading.Event | None = None,
        fleet: set[str] | None = None,
    ) -> list[Fetched] | None:  # fmt: skip
        """Scrape every target concurrently; return within the timeout whatever happens.

        A scrape still running at the deadline is a timeout: its sockets are shut down and its
        thread's late result is discarded. Returns None if `stop` was set meanwhile (SIGTERM):
        the step is abandoned rather than recorded as a fleet-wide outage. `fleet`: every
        instance still listed, when `targets` are only those due this step (a target sitting
        a step out keeps what is known of it).
        """
        t0, w0 = time.time(), time.perf_counter()
        with self._late_lock:
            listed = fleet if fleet is not None else {t.instance for t in targets}
            for name in self.late.keys() - listed:
                del self.late[name]
            late = set(self.late)
        jobs: list[tuple[Target, Future | None, Deadline | None]] = []
        for t in targets:
            prev = self._running.get(t.instance)
            if prev is not None and not prev[0].done():
                prev[1].expire()
                if time.monotonic() - prev[1].expired_at > STUCK_SECONDS:
                    jobs.append((t, None, None))
                    continue
            d = self._watchdog.add(Deadline(self.timeout))
            fut = self.pool.submit(self._fetch, t, d)
            fut.add_done_callback(
                lambda f, name=t.instance: self._settle(
                    name,
                    f.cancelled() or f.exception() is not None or f.result().reason == "timeout",
                )
            )
            self._running[t.instance] = (fut, d)
            jobs.append((t, fut, d))
        for name in [n for n, (f, _) in self._running.items() if n not in listed and f.done()]:
            del self._running[name]
        end = time.monotonic() + self.timeout
        pending = {f for t, f, _ in jobs if f is not None and t.instance not in late}
        while pending and not (stop is not None and stop.is_set()):
            left = end - time.monotonic()
            if left <= 0:
                break
            _, pending = wait(pending, timeout=min(left, 0.1) if stop is not None else left)
        out = []
        for t, fut, d in jobs:
            if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
                out.append(fut.result())
                continue
            if fut is None:
                message = "its previous scrape is still running"
            elif t.instance in late:  # runs on to its own deadline, to prove itself
                message = (
                    "late in an earlier step: not waited for until it answers in time "
                    f"{RELEASE_STEPS} times"
                )
            else:
                assert d is not None
                d.expire()  # wakes the thread wherever it is blocked
                self._settle(t.instance, late=True)
                message = f"no complete answer within {self.timeout:g}s (connect, headers, redirects, body)"  # fmt: skip
            out.append(
                Fetched(
                    t, t0, time.perf_counter() - w0, reason="timeout", message=message,
                    waited=t.instance not in late,
                )
            )  # fmt: skip
        return None if stop is not None and stop.is_set() else out

    def fetch(self, target: Target) -> Fetched:
        """One scrape under the same deadline rules (tests, tools)."""
        got = self.fetch_all([target])
        assert got is not None
        return got[0]

    # -- one scrape, on a worker thread ----------------------------------------------------
    def _fetch(self, target: Target, d: Deadline) -> Fetched:
        t0, w0 = time.time(), time.perf_counter()
        _current.deadline = d
        try:
            reason, message, text = self._get(target, d)
        finally:
            _current.deadline = None
            d.close()
        return Fetched(target, t0, time.perf_counter() - w0, text, reason, message)

    def _get(self, target: Target, d: Deadline) -> tuple[str, str, str | None]:
        late = ("timeout", f"no complete answer within {self.timeout:g}s", None)
        url, origin, hops = target.url, _origin(target.url), 0
        s = self._session()
        try:
            while True:
                left = d.remaining()
                if left < 0.001:
                    return late
                foreign = _origin(url) != origin  # only with --follow-redirects any-host
                with s.get(
                    url, timeout=(left, left), stream=True, verify=self.http.verify,
                    allow_redirects=False,
                    headers={"Authorization": None} if foreign else None,
                    auth=_no_auth if foreign else None,
                ) as r:  # fmt: skip
                    if r.status_code in REDIRECT_STATUSES and r.headers.get("Location"):
                        nxt = urljoin(url, r.headers["Location"])
                        refused = self._refuse_redirect(r.status_code, nxt, origin, hops)
                        if refused:
                            return refused
                        url, hops = nxt, hops + 1
                        continue
                    if r.status_code != 200:
                        return "http_status", f"HTTP {r.status_code}", None
                    return self._read(r, d, late)
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            return late
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if d.passed():  # the deadline shut the socket: that is the reason, not the error
                return late
            return "connection", str(exc)[:300], None

    def _refuse_redirect(
        self, status: int, nxt: str, origin: tuple, hops: int
    ) -> tuple[str, str, None] | None:
        if self.redirects == "never":
            return "http_status", f"HTTP {status} redirect to {nxt[:200]} (not followed)", None
        if hops >= MAX_REDIRECTS:
            return "redirect", f"more than {MAX_REDIRECTS} redirects", None
        if self.redirects == "same-host" and _origin(nxt) != origin:
            return (
                "redirect",
                f"redirect to another host refused: {nxt[:200]} "
                "(--follow-redirects any-host allows it)",
                None,
            )
        return None

    def _read(self, r: requests.Response, d: Deadline, late: tuple) -> tuple:
        chunks, size, lines, last = [], 0, 0, b"\n"
        # Lines that do not start with "#" are samples (or blank): once clearly more than the
        # limit have arrived, the page is refused before the rest is downloaded. The exact
        # count at the end decides the pages near the limit.
        max_lines = self.sample_limit + self.sample_limit // 10 + 100 if self.sample_limit else 0
        # read1 returns after one socket read, so limits and the deadline are checked as the
        # body arrives (iter_content blocks until 64 KiB or the end).
        read1 = getattr(r.raw, "read1", None)  # urllib3 >= 2
        it = iter(lambda: read1(65536, decode_content=True), b"") if read1 else r.iter_content(65536)  # fmt: skip
        for chunk in it:
            size += len(chunk)
            if size > self.max_bytes:
                return "too_large", f"page over {self.max_bytes} bytes", None
            if max_lines and chunk:
                lines += chunk.count(b"\n") - chunk.count(b"\n#") - (last + chunk[:1] == b"\n#")
                last = chunk[-1:]
                if lines > max_lines:
                    return self._over_limit(f"more than {max_lines} sample lines")
            if d.passed():
                return late
            chunks.append(chunk)
        if d.passed():  # a shut-down socket reads as the end of a body without a length
            return late
        text = b"".join(chunks).decode("utf-8", errors="replace")  # the exposition is UTF-8
        if self.sample_limit:
            n = count_samples(text, self.sample_limit)
            if n > self.sample_limit:
                return self._over_limit(f"{n} samples")
        return "", "", text

    def _over_limit(self, what: str) -> tuple[str, str, None]:
        return (
            "sample_limit",
            f"page has {what}, over --sample-limit {self.sample_limit} (refused unparsed)",
            None,
        )
