"""Hard deadlines for blocking sockets, and a bounded pool of daemon worker threads.

Socket timeouts bound each `recv` separately, so a peer that sends one byte a second never
trips them: headers, a TLS handshake or a body can be dribbled for minutes. A `Deadline` ends
that for good. Every socket of one operation (a scrape, with its redirects; one connection to
our listener) is registered to it, and when the deadline passes the sockets are shut down,
which wakes any thread blocked on them at once, whatever phase it is in. Registration keeps a
duplicate of the file descriptor, owned here until the operation ends, so a shutdown can never
hit an unrelated socket that reused a closed descriptor number.

`Workers` is a fixed pool of daemon threads: an operation that still cannot be interrupted (a
name lookup stuck in libc) occupies one worker but never holds the process open at exit, which
`concurrent.futures.ThreadPoolExecutor` would (it joins every worker at interpreter exit).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class Deadline:
    """The end of one operation (time.monotonic() seconds); see the module docstring."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.expired = False  # set once the sockets were (or would have been) shut down
        self.expired_at = 0.0  # time.monotonic() of expire()
        self.closed = False

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the deadline passes (at once if it already has)."""
        try:
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return  # already closed: nothing left to interrupt
        with self._lock:
            if not self.expired and not self.closed:
                self._socks.append(dup)
                return
        _shutdown(dup)
        dup.close()

    def expire(self) -> None:
        """Shut every registered socket down now; later registrations are shut down at once."""
        with self._lock:
            if not self.expired:
                self.expired, self.expired_at = True, time.monotonic()
            socks, self._socks = self._socks, []
        for s in socks:
            _shutdown(s)
            s.close()

    def close(self) -> None:
        """The operation is over: forget its sockets without touching the connections."""
        with self._lock:
            self.closed = True
            socks, self._socks = self._socks, []
        for s in socks:
            s.close()


def _shutdown(s: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the peer may have closed it first
        s.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """One thread that expires deadlines when they pass (for callers that cannot wait on them,
    like the listener's connections; a scrape step expires its own at the step deadline)."""

    def __init__(self, name: str = "watchdog") -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, deadline: Deadline) -> Deadline:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._seq), deadline))
            self._cond.notify()
        return deadline

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    while self._heap and self._heap[0][2].closed:  # ended in time
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        due = heapq.heappop(self._heap)[2]
                        break
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
            due.expire()  # outside the lock: a shutdown may take a moment


class Workers:
    """A fixed pool of daemon threads running submitted calls (see the module docstring)."""

    def __init__(self, n: int, name: str = "worker") -> None:
        self._q: queue.SimpleQueue[tuple[Future, Callable[..., Any], tuple] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, n))
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        fut: Future = Future()
        self._q.put((fut, fn, args))
        return fut

    def shutdown(self) -> None:
        """Workers stop after their current call; queued calls are cancelled."""
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._q.put(None)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fut, fn, args = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller, never lost in the thread
                fut.set_exception(exc)
