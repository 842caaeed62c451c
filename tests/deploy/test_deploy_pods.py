"""The Deployments' own args, run for real on loopback (paths remapped into a temp dir): the
probes and Service ports answer, the image's HEALTHCHECK passes, and the shipped Alertmanager
config delivers an alert to the webhook with the Secret's token."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_testlib import DEPLOY, ROOT, container

from coredns_anomaly.lab import processes

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).parent / "coredns-anomaly")


def get(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if get(url) == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} not ready in {timeout}s: {log.read_text()[-3000:]}")


def remap(args: list[str], mounts: dict[str, Path], port: int) -> list[str]:
    """Container paths -> temp dirs, 0.0.0.0:<port> -> a free loopback port."""
    out = []
    for a in args:
        flag, _, value = a.partition("=")
        if flag == "--listen":
            value = f"127.0.0.1:{port}"
        for inside, outside in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if value.startswith(inside + "/"):
                value = str(outside) + value[len(inside) :]
                break
        if value == "/opt/coredns-anomaly/models/default":  # the image's copy of models/default
            value = str(ROOT / "models" / "default")
        out.append(f"{flag}={value}" if value else a)
    return out


def probes_answer(c: dict, port: int) -> None:
    for probe in ("readinessProbe", "livenessProbe"):
        assert get(f"http://127.0.0.1:{port}{c[probe]['httpGet']['path']}") == 200, probe
    assert get(f"http://127.0.0.1:{port}/metrics") == 200


def healthcheck(port: int) -> int:
    env = {"COREDNS_ANOMALY_HEALTHCHECK_PORTS": str(port), "PATH": "/usr/bin:/bin"}
    script = DEPLOY / "docker" / "healthcheck.py"
    return subprocess.run([sys.executable, str(script)], env=env, timeout=30).returncode


def test_exporter_runs_with_the_deployment_args(k8s, tmp_path):
    c = container(k8s, "coredns-anomaly-exporter")
    cm = k8s[("ConfigMap", "coredns-anomaly-exporter")]["data"]
    config = tmp_path / "config"
    config.mkdir()
    # The ConfigMap's shape with a closed loopback target: tests never reach the example IPs.
    groups = yaml.safe_load(cm["targets.yml"])
    groups[0]["targets"] = [f"127.0.0.1:{processes.free_port()}"]
    (config / "targets.yml").write_text(yaml.safe_dump(groups))
    port = processes.free_port()
    args = remap(c["args"], {"/etc/coredns-anomaly": config, "/tmp": tmp_path}, port)
    log = tmp_path / "exporter.log"
    proc = processes.spawn([CLI, *args], log_path=log, cwd=tmp_path)
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc, log)
        probes_answer(c, port)
        assert healthcheck(port) == 0
    finally:
        processes.stop(proc)


def test_webhook_and_alertmanager_wiring(k8s, tmp_path):
    c = container(k8s, "coredns-anomaly-webhook")
    secret = k8s[("Secret", "coredns-anomaly-webhook")]["stringData"]
    secrets, store = tmp_path / "secrets", tmp_path / "store"
    secrets.mkdir()
    store.mkdir()
    for key in ("bearer-token", "basic-auth-password"):
        (secrets / key).write_text(secret[key])
    port = processes.free_port()
    mounts = {
        "/etc/coredns-anomaly/secrets": secrets,
        "/var/lib/coredns-anomaly": store,
        "/tmp": tmp_path,
    }
    args = remap(c["args"], mounts, port)
    log = tmp_path / "webhook.log"
    proc = processes.spawn([CLI, *args], log_path=log, cwd=tmp_path)
    am = None
    try:
        wait_ready(f"http://127.0.0.1:{port}/-/ready", proc, log)
        probes_answer(c, port)
        assert healthcheck(port) == 0

        # The shipped Alertmanager config, pointed at this webhook and the Secret's token file.
        cfg = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
        for route in cfg["route"]["routes"]:
            route["group_wait"] = "1s"
        (hook,) = next(r for r in cfg["receivers"] if r["name"] == "coredns-anomaly-webhook")[
            "webhook_configs"
        ]
        hook["url"] = f"http://127.0.0.1:{port}/webhook"
        token_file = Path(hook["http_config"]["authorization"]["credentials_file"]).name
        hook["http_config"]["authorization"]["credentials_file"] = str(secrets / token_file)
        (tmp_path / "am.yml").write_text(yaml.safe_dump(cfg))
        am_port = processes.free_port()
        am_log = tmp_path / "alertmanager.log"
        am = processes.spawn(
            [
                processes.find_binary("prometheus-alertmanager"),
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            log_path=am_log,
        )
        wait_ready(f"http://127.0.0.1:{am_port}/-/ready", am, am_log)
        alert = [{"labels": {"alertname": "CoreDNSAnomaly", "instance": "10.0.0.10:9153"}}]
        req = urllib.request.Request(
            f"http://127.0.0.1:{am_port}/api/v2/alerts",
            data=json.dumps(alert).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=5).close()

        db = store / "webhook.db"
        deadline = time.monotonic() + 60
        rows = []
        while time.monotonic() < deadline and not rows:
            time.sleep(1)
            with sqlite3.connect(db) as conn:
                rows = conn.execute("SELECT labels FROM alerts").fetchall()
        assert rows, f"no delivery stored: {am_log.read_text()[-3000:]}"
        assert json.loads(rows[0][0])["alertname"] == "CoreDNSAnomaly"
    finally:
        if am is not None:
            processes.stop(am)
        processes.stop(proc)
