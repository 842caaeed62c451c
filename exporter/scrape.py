"""Concurrent scrapes of CoreDNS /metrics with a deadline and a size cap.

Every failure becomes a reason (timeout, connection, http_status, too_large) instead of an
exception, so one sick target never stalls or crashes the step for the others.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
import urllib3

from .page import MAX_PAGE_BYTES
from .targets import Target

ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


@dataclass
class Fetched:
    target: Target
    ts: float  # when the scrape started (the step's time for this target)
    duration: float
    text: str | None = None
    reason: str = ""  # set when text is None
    message: str = ""


@dataclass(frozen=True)
class HttpOptions:
    """TLS and auth for scrapes and Prometheus API calls (flags of the same names)."""

    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    ca_file: str | None = None
    cert: tuple[str, str] | None = None
    insecure_skip_verify: bool = False

    def apply(self, s: requests.Session) -> None:
        s.trust_env = False  # REQUESTS_CA_BUNDLE would silently override `verify`
        if self.bearer_token:
            s.headers["Authorization"] = f"Bearer {self.bearer_token}"
        if self.basic_auth:
            s.auth = self.basic_auth
        if self.cert:
            s.cert = self.cert

    @property
    def verify(self) -> bool | str:
        return False if self.insecure_skip_verify else (self.ca_file or True)


class Scraper:
    def __init__(
        self, timeout: float, http: HttpOptions | None = None, workers: int = 32,
        max_bytes: int = MAX_PAGE_BYTES,
    ) -> None:  # fmt: skip
        self.timeout, self.http, self.max_bytes = timeout, http or HttpOptions(), max_bytes
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scrape")
        self._local = threading.local()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.headers["Accept"] = ACCEPT
            s.headers["User-Agent"] = "coredns-anomaly-exporter"
            self.http.apply(s)
            self._local.session = s
        return s

    def fetch(self, target: Target) -> Fetched:
        t0, w0 = time.time(), time.perf_counter()
        deadline = w0 + self.timeout

        def done(**kw) -> Fetched:
            return Fetched(target, t0, time.perf_counter() - w0, **kw)

        try:
            with self._session().get(
                target.url, timeout=self.timeout, stream=True, verify=self.http.verify
            ) as r:
                if r.status_code != 200:
                    return done(reason="http_status", message=f"HTTP {r.status_code}")
                chunks, size = [], 0
                # read1 returns after one socket read, so the deadline also holds against a
                # server that dribbles a body (iter_content blocks until 64 KiB or the end).
                read1 = getattr(r.raw, "read1", None)  # urllib3 >= 2
                it = (
                    iter(lambda: read1(65536, decode_content=True), b"")
                    if read1
                    else r.iter_content(65536)
                )
                for chunk in it:
                    size += len(chunk)
                    if size > self.max_bytes:
                        return done(reason="too_large", message=f"page over {self.max_bytes} bytes")
                    if time.perf_counter() > deadline:
                        return done(reason="timeout", message=f"slower than {self.timeout}s")
                    chunks.append(chunk)
                text = b"".join(chunks).decode(r.encoding or "utf-8", errors="replace")
        except (requests.Timeout, urllib3.exceptions.TimeoutError):
            return done(reason="timeout", message=f"no answer within {self.timeout}s")
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return done(reason="connection", message=str(exc)[:300])
        return done(text=text)

    def fetch_all(self, targets: list[Target]) -> list[Fetched]:
        return list(self.pool.map(self.fetch, targets))
