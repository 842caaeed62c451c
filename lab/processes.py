"""Child processes the lab owns: started on free loopback ports, always cleaned up.

Children get PR_SET_PDEATHSIG so they die with the lab even on kill -9, and the lab's own
registry stops them on normal exit, Ctrl-C and exceptions.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_children: list[subprocess.Popen] = []
_lock = threading.Lock()
# PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so every child is
# forked from this one long-lived thread, never from a short-lived worker.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on host (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair found on loopback")


def find_binary(name: str, env_var: str | None = None) -> str:
    """Locate a tool or say exactly how to get it."""
    root = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get(env_var or "", ""), str(root / ".tools" / "bin" / name)]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return found
    hint = {
        "coredns": "run `make setup` (builds the pinned CoreDNS into .tools/bin)",
        "dnsperf": "apt-get install -y dnsperf (or `make setup`)",
        "prometheus": "apt-get install -y prometheus (or `make setup`)",
        "promtool": "apt-get install -y prometheus (or `make setup`)",
    }.get(name, f"install {name}")
    raise FileNotFoundError(f"{name} not found: {hint}")


def spawn(args: Sequence[str], log_path: Path | None = None, **kw) -> subprocess.Popen:
    """Start a child that is registered for cleanup and dies with us."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = _spawner.submit(
        subprocess.Popen,
        list(args),
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        **kw,
    ).result()
    if log_path:
        out.close()
    with _lock:
        _children.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)  # a throttled/stopped child must run to exit
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    with _lock:
        if proc in _children:
            _children.remove(proc)


def stop_all() -> None:
    with _lock:
        procs = list(_children)
    for p in procs:
        stop(p)


atexit.register(stop_all)


_L = TypeVar("_L", bound="Lifecycle")


class Lifecycle:
    """`with X(...) as x:` runs x.start() and, on the way out, x.close(); close() also runs when
    start() fails half way, so whatever it had started is stopped."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _L) -> _L:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def install_signal_handlers() -> None:
    """Turn SIGTERM into SystemExit so finally-blocks and atexit clean up children."""

    def _term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    import requests

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")
