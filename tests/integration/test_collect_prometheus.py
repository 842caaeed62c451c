"""`collect` against the real Prometheus (TLS + basic auth) scraping the lab's real CoreDNS."""

from __future__ import annotations

import time

import bcrypt
import numpy as np
import pytest

from coredns_anomaly.cli import main as cli
from coredns_anomaly.exporter.features import FEATURE_NAMES
from coredns_anomaly.lab import faults, prometheus
from coredns_anomaly.lab.lab import Lab, LabSettings
from coredns_anomaly.loop.tls import openssl_cert
from coredns_anomaly.training import dataset as ds_mod
from coredns_anomaly.training.featurize import featurize

PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    wd = tmp_path_factory.mktemp("collect")
    cert, key = openssl_cert(wd, "tls")
    web = {
        "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
        "basic_auth_users": {
            "collector": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        },
    }
    (wd / "password").write_text(PASSWORD + "\n")
    (wd / "labels.csv").write_text(
        "instance,start,end,verdict,class,source,alertname,fingerprint,comment\n"
        "{inst},2026-01-01T00:00:00Z,2026-01-01T00:05:00Z,false_alarm,,verified,CoreDNSAnomaly,,benign deploy\n"
    )
    with Lab(LabSettings(instances=1, step=1.0, base_rates=(100.0,), workdir=wd / "lab")) as lab:
        target = lab.instances[0].front.metrics_url.split("/")[2]
        # /-/ready wants the basic auth too; the recording below gives it time to start
        prom = prometheus.start(
            wd, prometheus.scrape_config([target]), web_config=web, ready_timeout=None
        )
        base = prom.url
        start = time.time()
        lab.record([faults.Item(0, "end", 25.0, 0.0, 0.0, False)])
        end = time.time()
        labels = (wd / "labels.csv").read_text().replace("{inst}", target)
        (wd / "labels.csv").write_text(labels)
        common = [
            "collect", "--prometheus", base, "--selector", '{job="coredns"}',
            "--basic-auth-user", "collector", "--basic-auth-password-file", str(wd / "password"),
            "--ca-file", str(wd / "tls.crt"),
        ]  # fmt: skip
        rc = cli(
            common
            + [
                "--start",
                str(start + 3),
                "--end",
                str(end),
                "--step",
                "1",
                "--out",
                str(wd / "ds"),
                "--labels",
                str(wd / "labels.csv"),
            ]
        )
        bad = wd / "wrong"
        bad.write_text("nope\n")
        yield {
            "rc": rc,
            "ds": wd / "ds",
            "target": target,
            "base": base,
            "wd": wd,
            "bad": bad,
            "common": common,
            "start": start,
            "end": end,
        }
        prom.stop()


def test_collect_writes_the_lab_format_from_prometheus(collected):
    assert collected["rc"] == 0
    ds = ds_mod.load(collected["ds"])
    assert ds.instances == [collected["target"]]
    assert ds.meta["source"] == "prometheus" and ds.meta["coredns_version"].startswith("1.")
    names = set(ds.samples["name"])
    assert {
        "coredns_dns_requests_total",
        "coredns_dns_request_duration_seconds_bucket",
        "up",
    } <= names
    f = featurize(ds)[0]
    rate = np.expm1(f.X[:, FEATURE_NAMES.index("dns_requests_rate")])
    assert np.nanmedian(rate) > 100  # ~100 lookups/s become several queries each


def test_collect_attaches_the_label_file(collected):
    ds = ds_mod.load(collected["ds"])
    row = ds.labels.iloc[0]
    assert (row["class"], bool(row["anomaly"]), row["source"]) == ("false_alarm", False, "verified")


def collect_cli(collected, args: list[str], out: str) -> int:
    """`collect` over the whole recording with these auth/TLS flags, into WD/out."""
    return cli(
        args
        + ["--start", str(collected["start"]), "--end", str(collected["end"]), "--step", "1",
           "--out", str(collected["wd"] / out)]
    )  # fmt: skip


def test_wrong_password_is_a_clear_error(collected, capsys):
    args = list(collected["common"])
    args[args.index("--basic-auth-password-file") + 1] = str(collected["bad"])
    assert collect_cli(collected, args, "x") == 2
    assert "HTTP 401" in capsys.readouterr().err
    assert not (collected["wd"] / "x").exists()


def test_untrusted_tls_is_refused_without_ca(collected, capsys):
    args = list(collected["common"])
    i = args.index("--ca-file")
    del args[i : i + 2]
    assert collect_cli(collected, args, "y") == 2
    assert "cannot reach" in capsys.readouterr().err
