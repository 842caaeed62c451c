"""Blocking work inside gevent workers: keep the event loop free while SQLite or bcrypt runs.

The shipped gunicorn worker is gevent's (docs/webhook.md, "Slow clients"): one event loop per
process serves every connection, so a slow client costs a greenlet, not a thread. The price is
that a blocking call (an fsync in a commit, a bcrypt check) stops that loop for everyone. Such
calls go through :class:`Offload`, which runs them on a native thread of a small gevent
``ThreadPool`` while the calling greenlet waits cooperatively; outside gevent (tests, the dev
server, the ``gthread`` and ``sync`` workers) it simply calls the function.

Stdlib only at import time: gevent is imported only when the process is already patched.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def cooperative() -> bool:
    """True in a process whose threading module gevent has monkey-patched (gunicorn's worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def native_local_class() -> type:
    """The OS-thread ``threading.local`` even when gevent patched it to be greenlet-local.

    SQLite connections are per OS thread: with a greenlet-local, every keep-alive connection's
    greenlet would open its own database connection and leave it to the garbage collector.
    """
    if cooperative():
        from gevent import monkey

        return monkey.get_original("threading", "local")
    return threading.local


class Offload:
    """Run a blocking callable off the event loop (gevent) or inline (everything else).

    ``size`` native threads at most, so it also bounds how many such calls run at once (one
    writer thread for the store; bcrypt checks at most one core per worker). Created lazily and
    per process: a pool made before gunicorn forks must never be used in a child.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._pool: Any = None
        self._pid = os.getpid()

    def __call__(self, fn: Callable[..., T], *args: Any) -> T:
        if not cooperative():
            return fn(*args)
        if self._pool is None or self._pid != os.getpid():
            from gevent.threadpool import ThreadPool

            self._pool, self._pid = ThreadPool(self.size), os.getpid()
        return self._pool.apply(fn, args)
