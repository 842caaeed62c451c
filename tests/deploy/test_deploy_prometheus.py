"""deploy/prometheus: promtool accepts both configs, and the shipped hashmod relabeling keeps, in
the real Prometheus, exactly the targets `exporter --shard i/n` owns."""

from __future__ import annotations

import copy
import json
import random
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from deploy_testlib import DEPLOY

from coredns_anomaly.exporter.shard import owns

PROM = DEPLOY / "prometheus"
CONFIGS = ["prometheus.yml", "prometheus-sharded.yml"]


def load(name: str) -> dict:
    return yaml.safe_load((PROM / name).read_text())


def job(cfg: dict, name: str) -> dict:
    return next(j for j in cfg["scrape_configs"] if j["job_name"] == name)


@pytest.mark.parametrize("name", CONFIGS)
def test_promtool_check_config(promtool, name):
    res = subprocess.run(
        [promtool, "check", "config", name], cwd=PROM, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # A warning means a referenced file is missing (e.g. the example targets file).
    assert "WARNING" not in res.stdout + res.stderr, res.stdout + res.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_exporter_job_honors_labels(name):
    assert job(load(name), "coredns-anomaly")["honor_labels"] is True


def test_sharded_config_is_hashmod_on_address():
    relabels = job(load("prometheus-sharded.yml"), "coredns")["relabel_configs"]
    hashmod, keep = relabels
    assert hashmod["action"] == "hashmod" and hashmod["source_labels"] == ["__address__"]
    assert keep == {"source_labels": [hashmod["target_label"]], "regex": "0", "action": "keep"}


def shard_job(template: dict, i: int, n: int, sd_file: Path) -> dict:
    """The shipped coredns job, made shard i of n, reading sd_file."""
    j = copy.deepcopy(template)
    j["job_name"] = f"shard-{i}-of-{n}"
    j["file_sd_configs"] = [{"files": [str(sd_file)]}]
    hashmod, keep = j["relabel_configs"]
    hashmod["modulus"] = n
    keep["regex"] = str(i)
    return j


@pytest.mark.integration
def test_real_prometheus_hashmod_keeps_what_the_exporter_owns(tmp_path):
    from coredns_anomaly.lab import prometheus

    # Loopback only: nothing listens there and the long interval means no scrape is attempted
    # before the test reads the target lists (the targets being down does not matter).
    rng = random.Random(7)
    addresses = sorted(
        {
            f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}:{rng.randrange(1024, 65536)}"
            for _ in range(50)
        }
    )
    sd_file = tmp_path / "fleet.yml"
    sd_file.write_text(yaml.safe_dump([{"targets": addresses}]))
    template = job(load("prometheus-sharded.yml"), "coredns")
    shards = [(i, n) for n in (3, 5) for i in range(n)]
    cfg = {
        "global": {"scrape_interval": "1h", "scrape_timeout": "1s"},
        "scrape_configs": [shard_job(template, i, n, sd_file) for i, n in shards],
    }
    with prometheus.start(tmp_path, cfg) as prom:
        kept, dropped = wait_for_targets(prom.port, len(addresses) * len(shards))

    for i, n in shards:
        name = f"shard-{i}-of-{n}"
        expected = {a for a in addresses if owns(a, (i, n))}
        assert kept[name] == expected, f"{name}: Prometheus and exporter.shard disagree"
        assert kept[name] | dropped[name] == set(addresses)
    for n in (3, 5):  # the shards partition the fleet
        parts = [kept[f"shard-{i}-of-{n}"] for i in range(n)]
        assert sum(map(len, parts)) == len(addresses) and set().union(*parts) == set(addresses)


def wait_for_targets(port: int, total: int, timeout: float = 60.0):
    """(kept, dropped): job -> addresses, once Prometheus has sorted every discovered target."""
    url = f"http://127.0.0.1:{port}/api/v1/targets"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                data = json.load(resp)["data"]
        except OSError as exc:
            last = exc
            time.sleep(0.5)
            continue
        kept: dict[str, set[str]] = {}
        dropped: dict[str, set[str]] = {}
        for t in data["activeTargets"]:
            kept.setdefault(t["scrapePool"], set()).add(t["discoveredLabels"]["__address__"])
        for t in data["droppedTargets"]:
            labels = t["discoveredLabels"]
            dropped.setdefault(labels["job"], set()).add(labels["__address__"])
        seen = sum(map(len, kept.values())) + sum(map(len, dropped.values()))
        if seen >= total:
            return kept, dropped
        last = f"{seen}/{total} targets"
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not list all targets in {timeout}s: {last}")
