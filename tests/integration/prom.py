"""Start the real Prometheus from Debian on loopback for a test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from coredns_anomaly.lab import processes


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def start_prometheus(
    workdir: Path,
    scrape_targets: list[str],
    interval: str = "1s",
    web_config: dict | None = None,
) -> tuple[subprocess.Popen, int]:
    """Prometheus scraping `scrape_targets` (host:port) as job coredns; returns (proc, port)."""
    binary = processes.find_binary("prometheus")
    port = processes.free_port()
    cfg = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": "coredns", "static_configs": [{"targets": scrape_targets}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    args = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if web_config:
        (workdir / "web.yml").write_text(yaml.safe_dump(web_config))
        args.append(f"--web.config.file={workdir / 'web.yml'}")
    proc = processes.spawn(args, log_path=workdir / "prometheus.log")
    return proc, port
