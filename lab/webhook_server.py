"""The webhook under gunicorn on loopback, as tests and benchmarks start it: `start_server`
runs `coredns-anomaly webhook serve` in its own session (so a test can kill -9 the master and
still clean up its workers), waits until every worker booted, and `restart` brings it back on
the same port and store. Alongside, the facts about its processes the benches measure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .processes import free_port

TOKEN = "bench-token"  # the bearer token every started server accepts


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    port: int
    db: str
    log_path: str
    args: list[str]
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    @property
    def expected_workers(self) -> int:
        return int(self.args[self.args.index("--workers") + 1])

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # Workers orphaned by a killed master: the session we started is ours to clean up.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_pressure() -> str:
    """The kernel's CPU pressure line (how much runnable work waited for a CPU), if available."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return "n/a"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_server(
    workdir: str | Path,
    *,
    port: int | None = None,
    workers: int = 2,
    threads: int = 8,
    worker_class: str = "gevent",
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    db: str | None = None,
    ready_timeout: float = 30,
    scheme: str = "http",
) -> Server:
    """`coredns-anomaly webhook serve` (gunicorn; the Popen pid becomes the master by exec)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "token"
    if not token_file.exists():
        token_file.write_text(TOKEN + "\n")
    port = port or free_port()
    db = db or str(workdir / "webhook.db")
    args = [
        sys.executable,
        "-c",
        "import sys; from coredns_anomaly.cli import main; sys.exit(main())",
        "webhook",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--db",
        db,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        worker_class,
        "--bearer-token-file",
        str(token_file),
        "--metrics-dir",
        str(workdir / "metrics"),
        *(extra_args or []),
    ]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("COREDNS_ANOMALY_WEBHOOK_")}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env.update(env or {})
    log_path = str(workdir / f"server-{port}.log")
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
    )
    log.close()
    server = Server(proc, f"{scheme}://127.0.0.1:{port}", port, db, log_path, args, full_env)
    wait_ready(server, ready_timeout)
    return server


def restart(server: Server, ready_timeout: float = 30) -> Server:
    log = open(server.log_path, "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        server.args, stdout=log, stderr=subprocess.STDOUT, env=server.env, start_new_session=True
    )
    log.close()
    new = Server(proc, server.url, server.port, server.db, server.log_path, server.args, server.env)
    wait_ready(new, ready_timeout)
    return new


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"webhook exited with {server.proc.returncode}; see {server.log_path}:\n"
                + Path(server.log_path).read_text()[-3000:]
            )
        try:
            # A TLS server in the tests and benchmarks has a self-signed certificate.
            insecure = ssl._create_unverified_context() if server.url.startswith("https") else None
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2, context=insecure) as r:
                # every worker booted, so a test can tell a restarted worker from a late one
                if r.status == 200 and len(server.workers()) >= server.expected_workers:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"webhook not ready after {timeout}s; see {server.log_path}")
