"""Start the whole loop with real components on loopback ports, and always tear it down.

Order follows the data: the lab's CoreDNS (with traffic), the exporter scraping them, the
webhook under gunicorn, Alertmanager routing to it, Prometheus scraping CoreDNS and the
exporter with the rule files loaded. Every child is started through the lab's `spawn`
(Prometheus through `lab.prometheus.start`), so it dies with this process even on kill -9
(PDEATHSIG), and `close()` runs on exceptions and Ctrl-C. Prometheus is read through the one
API client (`exporter.promclient.PrometheusAPI`), the webhook's alerts through its `AlertStore`.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from coredns_anomaly.exporter.promclient import PrometheusAPI
from coredns_anomaly.lab import processes, prometheus
from coredns_anomaly.lab.lab import Lab, LabSettings
from coredns_anomaly.webhook.store import AlertStore

log = logging.getLogger(__name__)

CORE_JOB, EXPORTER_JOB = "coredns", "coredns-anomaly"


class StackError(RuntimeError):
    pass


@dataclass
class StackSettings:
    workdir: Path
    model: Path
    rule_files: list[Path]
    instances: int = 2
    seed: int = 1
    base_rates: tuple[float, ...] = (140.0, 170.0)
    interval: float = 2.0  # Prometheus scrape and evaluation interval (the model's step)


@dataclass
class Stack(processes.Lifecycle):
    s: StackSettings
    lab: Lab | None = None
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, Any] = field(default_factory=dict)
    prometheus_api: PrometheusAPI | None = None  # the client of the stack's Prometheus
    webhook_user: str = "demo"
    webhook_password: str = ""

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        # Absolute paths: Prometheus resolves rule files against its config file's folder, and
        # a rule glob that matches nothing loads no rules without a word.
        self.s.workdir = self.s.workdir.resolve()
        self.s.rule_files = [f.resolve() for f in self.s.rule_files]
        wd = self.s.workdir
        wd.mkdir(parents=True, exist_ok=True)
        self.lab = Lab(
            LabSettings(
                self.s.instances, self.s.interval, self.s.seed, self.s.base_rates, wd / "lab"
            )
        )
        self.lab.start()
        for name in ("exporter", "webhook", "alertmanager", "alertmanager_cluster", "prometheus"):
            self.ports[name] = processes.free_port()
        self._start_exporter()
        self._start_webhook()
        self._start_alertmanager()
        self._start_prometheus()
        self.prometheus_api = PrometheusAPI(self.url("prometheus"), timeout=30)
        for name, path in (
            ("exporter", "/-/ready"),
            ("webhook", "/-/ready"),
            ("alertmanager", "/-/ready"),
            ("prometheus", "/-/ready"),
        ):
            self._wait_http(name, path)
        log.info(
            "loop up: %s",
            ", ".join(f"{k} :{v}" for k, v in self.ports.items() if k != "alertmanager_cluster"),
        )

    def close(self) -> None:
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except Exception:  # noqa: BLE001 - a child that will not stop is killed
                    proc.kill()
        if self.prometheus_api is not None:
            self.prometheus_api.close()
            self.prometheus_api = None
        if self.lab is not None:
            self.lab.close()
            self.lab = None

    # -- components -------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def instances(self) -> dict[str, str]:
        """Lab instance name -> the `instance` label (host:port of its metrics)."""
        assert self.lab is not None
        return {
            i.name: i.front.metrics_url.split("//")[1].split("/")[0] for i in self.lab.instances
        }

    def _spawn(self, name: str, args: list[str]) -> None:
        self.procs[name] = processes.spawn(args, log_path=self.s.workdir / f"{name}.log")

    def _start_exporter(self) -> None:
        assert self.lab is not None
        # baselines saved in the loop's own directory: a fresh lab's instances learn anew
        args = [sys.executable, "-m", "coredns_anomaly", "exporter", "--model", str(self.s.model),
                "--listen", f"127.0.0.1:{self.ports['exporter']}",
                "--state-file", str(self.s.workdir / "exporter-state.json")]  # fmt: skip
        for inst in self.lab.instances:
            args += ["--target", inst.front.metrics_url]
        self._spawn("exporter", args)

    def _start_webhook(self) -> None:
        wd = self.s.workdir
        self.webhook_password = secrets.token_urlsafe(12)
        pw = wd / "webhook-password"
        pw.write_text(self.webhook_password + "\n")
        pw.chmod(0o600)
        self._spawn("webhook", [
            sys.executable, "-m", "coredns_anomaly", "webhook", "serve",
            "--listen", f"127.0.0.1:{self.ports['webhook']}", "--db", str(wd / "webhook.db"),
            "--basic-auth-username", self.webhook_user, "--basic-auth-password-file", str(pw),
            "--workers", "1", "--threads", "4", "--metrics-dir", str(wd / "webhook-metrics"),
            "--prometheus-url", self.url("prometheus"),
        ])  # fmt: skip

    def _start_alertmanager(self) -> None:
        wd = self.s.workdir
        cfg = {
            "route": {
                "receiver": "coredns-anomaly-webhook", "group_by": ["alertname", "instance"],
                "group_wait": "1s", "group_interval": "2s", "repeat_interval": "4h",
            },
            "receivers": [{
                "name": "coredns-anomaly-webhook",
                "webhook_configs": [{
                    "url": f"{self.url('webhook')}/webhook", "send_resolved": True,
                    "http_config": {"basic_auth": {"username": self.webhook_user, "password_file": str(wd / "webhook-password")}},
                }],
            }],
        }  # fmt: skip
        (wd / "alertmanager.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        self._spawn("alertmanager", [
            processes.find_binary("prometheus-alertmanager"), f"--config.file={wd / 'alertmanager.yml'}",
            f"--storage.path={wd / 'alertmanager-data'}", f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
            f"--cluster.listen-address=127.0.0.1:{self.ports['alertmanager_cluster']}",
        ])  # fmt: skip

    def _start_prometheus(self) -> None:
        assert self.lab is not None
        wd = self.s.workdir
        iv = f"{self.s.interval:g}s"
        rules = []
        for i, f in enumerate(self.s.rule_files):
            dst = wd / f"rules-{i}-{f.name}"
            dst.write_text(f.read_text())
            rules.append(str(dst))
        cfg = {
            "global": {"scrape_interval": iv, "evaluation_interval": iv, "scrape_timeout": f"{int(self.s.interval * 750)}ms"},
            "rule_files": rules,
            "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{self.ports['alertmanager']}"]}]}]},
            "scrape_configs": [
                {"job_name": CORE_JOB, "static_configs": [{"targets": list(self.instances.values())}]},
                {"job_name": EXPORTER_JOB, "honor_labels": True, "static_configs": [{"targets": [f"127.0.0.1:{self.ports['exporter']}"]}]},
            ],
        }  # fmt: skip
        self.procs["prometheus"] = prometheus.start(
            wd, cfg, tsdb=wd / "prometheus-data", port=self.ports["prometheus"],
            args=["--rules.alert.resend-delay=2s"], ready_timeout=None,  # waited for in start()
        ).proc  # fmt: skip

    def _wait_http(self, name: str, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}: {self._tail(name)}")
            try:
                if requests.get(self.url(name) + path, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise StackError(f"{name} not ready after {timeout:.0f}s: {self._tail(name)}")

    def _tail(self, name: str, n: int = 1500) -> str:
        try:
            return (self.s.workdir / f"{name}.log").read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    # -- observation ------------------------------------------------------------------
    def exporter_series(self, name: str) -> dict[str, float]:
        """instance -> value of one exporter series, straight from its /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        text = requests.get(self.url("exporter") + "/metrics", timeout=5).text
        out = {}
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == name and "instance" in smp.labels:
                    out[smp.labels["instance"]] = smp.value
        return out

    def prometheus_alerts(self) -> list[dict]:
        assert self.prometheus_api is not None
        return self.prometheus_api.alerts()

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict]:
        assert self.prometheus_api is not None
        return self.prometheus_api.query_range(expr, start, end, step)

    def webhook_deliveries(self) -> list[dict]:
        """Alerts the webhook stored, with when it received them (read through its store)."""
        db = self.s.workdir / "webhook.db"
        if not db.exists():
            return []
        store = AlertStore(str(db), busy_timeout_ms=5000)
        try:
            return store.notifications()
        except sqlite3.OperationalError:  # the webhook has not made its tables yet
            return []
        finally:
            store.close()
