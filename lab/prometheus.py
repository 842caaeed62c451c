"""The real Prometheus on loopback, started one way for the loop, the baselines, tests and benches.

`start` writes the config, spawns Prometheus through `processes.spawn` (so it dies with us) and
waits for /-/ready; `serving` is the read-only case, a Prometheus answering queries over a
backfilled TSDB without scraping; `backfill_openmetrics` and `run_promtool` make such TSDBs.
Talking to it goes through the one client, `coredns_anomaly.exporter.promclient.PrometheusAPI`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import processes

RETENTION = "100y"  # time retention must never delete a backfilled block, however old


def binaries() -> tuple[str, str]:
    """prometheus and promtool, or a FileNotFoundError saying how to install them."""
    return processes.find_binary("prometheus"), processes.find_binary("promtool")


def one_core_env() -> dict[str, str]:
    """One core each: the machine is shared (lab recordings); backfills and queries are small."""
    return {**os.environ, "GOMAXPROCS": "1"}


def run_promtool(args: Sequence[str], what: str) -> None:
    """`promtool ARGS`; a RuntimeError naming `what` and promtool's own words if it fails."""
    res = subprocess.run(
        [processes.find_binary("promtool"), *args], capture_output=True, text=True,
        env=one_core_env(),
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(
            f"{what} failed ({res.returncode}): {(res.stderr or res.stdout)[-2000:]}"
        )


def backfill_openmetrics(om: Path, tsdb: Path) -> None:
    """An OpenMetrics file (ending in `# EOF`) -> TSDB blocks in `tsdb`."""
    run_promtool(
        ["tsdb", "create-blocks-from", "openmetrics", "--quiet", str(om), str(tsdb)],
        "promtool tsdb create-blocks-from openmetrics",
    )


def scrape_config(targets: Sequence[str], interval: str = "1s", job: str = "coredns") -> dict:
    """A config scraping `targets` (host:port) as one job, evaluating at the same interval."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }


@dataclass
class Prometheus:
    proc: subprocess.Popen
    port: int
    log_path: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def tail(self, n: int = 2000) -> str:
        p = self.log_path
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /-/ready answers 200; a RuntimeError with the log's tail if it never does."""
        try:
            processes.wait_http(f"{self.url}/-/ready", timeout=timeout, proc=self.proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"Prometheus did not start: {exc}\n{self.tail()}") from exc

    def stop(self) -> None:
        processes.stop(self.proc)

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    workdir: Path,
    config: dict[str, Any] | str,
    *,
    tsdb: Path | None = None,
    port: int | None = None,
    retention: str | None = None,
    web_config: dict[str, Any] | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    ready_timeout: float | None = 60.0,
) -> Prometheus:
    """Prometheus on 127.0.0.1 (`port` or a free one) with `config` written to
    WORKDIR/prometheus.yml, its TSDB in `tsdb` (default WORKDIR/tsdb) and its log in
    WORKDIR/prometheus.log. Waits for /-/ready unless `ready_timeout` is None (a caller that
    waits for several children itself, or a web config whose auth /-/ready would need)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    port = port or processes.free_port()
    argv = [
        processes.find_binary("prometheus"),
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tsdb or workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if retention:
        argv.append(f"--storage.tsdb.retention.time={retention}")
    scheme = "http"
    if web_config:
        (workdir / "web.yml").write_text(yaml.safe_dump(web_config, sort_keys=False))
        argv.append(f"--web.config.file={workdir / 'web.yml'}")
        scheme = "https" if "tls_server_config" in web_config else "http"
    log_path = workdir / "prometheus.log"
    proc = processes.spawn([*argv, *args], log_path=log_path, env=env)
    prom = Prometheus(proc, port, log_path, scheme)
    if ready_timeout is not None:
        try:
            prom.wait_ready(ready_timeout)
        except BaseException:
            prom.stop()
            raise
    return prom


@contextlib.contextmanager
def serving(tsdb: Path, workdir: Path) -> Iterator[str]:
    """A Prometheus serving `tsdb` (backfilled, kept however old) on a free loopback port, no
    scraping, one core; yields its base URL and stops it on exit."""
    with start(workdir, {"global": {}}, tsdb=tsdb, retention=RETENTION, env=one_core_env()) as prom:
        yield prom.url
