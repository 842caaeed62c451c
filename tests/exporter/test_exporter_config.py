"""Configuration: flags > env (COREDNS_ANOMALY_*) > YAML --config > defaults, clear usage
errors (exit 2) for unknown keys and bad values; --shard and Prometheus' hashmod."""

from __future__ import annotations

import argparse
import subprocess

import pytest
from exporter_testlib import ROOT

from coredns_anomaly.cli import UsageError
from coredns_anomaly.exporter import cli
from coredns_anomaly.exporter.shard import hashmod, owns, parse_shard
from coredns_anomaly.exporter.targets import make_target


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["exporter", *argv])


def test_defaults():
    cfg = cli.resolve(parse([]), env={})
    assert cfg["model"] == "models/default" and cfg["listen"] == "0.0.0.0:9096"
    assert cfg["target"] == [] and cfg["shard"] == "0/1" and cfg["explain_top"] == 3
    assert cfg["scrape_timeout"] is None and cfg["insecure_skip_verify"] is False


def test_flags_beat_env_beat_yaml_beat_defaults(tmp_path):
    conf = tmp_path / "exporter.yml"
    conf.write_text(
        "model: /yaml/model\nlisten: 127.0.0.1:1111\nexplain_top: 5\nscrape_timeout: 0.9\n"
        "targets: [yaml-a:9153, yaml-b:9153]\nworkers: 7\ninsecure_skip_verify: true\n"
    )
    env = {
        "COREDNS_ANOMALY_LISTEN": "127.0.0.1:2222",
        "COREDNS_ANOMALY_EXPLAIN_TOP": "4",
        "COREDNS_ANOMALY_TARGET": "env-a:9153, env-b:9153,",
    }
    cfg = cli.resolve(parse(["--config", str(conf), "--explain-top", "2"]), env=env)
    assert cfg["explain_top"] == 2  # flag
    assert cfg["listen"] == "127.0.0.1:2222"  # env over YAML
    assert [t.strip() for t in cfg["target"]] == ["env-a:9153", "env-b:9153"]  # env over YAML
    assert cfg["model"] == "/yaml/model" and cfg["scrape_timeout"] == 0.9  # YAML over defaults
    assert cfg["workers"] == 7 and cfg["insecure_skip_verify"] is True
    assert cfg["shard"] == "0/1"  # default
    cfg = cli.resolve(parse(["--config", str(conf), "--target", "flag:9153"]), env={})
    assert cfg["target"] == ["flag:9153"] and cfg["listen"] == "127.0.0.1:1111"
    # the config file may also come from the environment
    cfg = cli.resolve(parse([]), env={"COREDNS_ANOMALY_CONFIG": str(conf)})
    assert cfg["model"] == "/yaml/model"
    # a boolean env var
    assert cli.resolve(parse([]), env={"COREDNS_ANOMALY_INSECURE_SKIP_VERIFY": "yes"})["insecure_skip_verify"] is True  # fmt: skip
    assert cli.resolve(parse([]), env={"COREDNS_ANOMALY_INSECURE_SKIP_VERIFY": "0"})["insecure_skip_verify"] is False  # fmt: skip


def test_every_option_has_an_env_var_named_after_its_flag():
    for o in cli.OPTIONS:
        assert o.env == "COREDNS_ANOMALY_" + o.flag[2:].upper().replace("-", "_")
        assert o.key == o.flag[2:].replace("-", "_")


@pytest.mark.parametrize(
    "yaml_text, words",
    [
        ("model: m\nlisten_address: x\n", ["unknown keys ['listen_address']"]),
        ("- a\n- b\n", ["expected a mapping"]),
        ("model: [unclosed\n", ["--config"]),
        ("explain_top: many\n", ["--explain-top"]),
    ],
)
def test_bad_config_is_a_usage_error(tmp_path, yaml_text, words):
    conf = tmp_path / "bad.yml"
    conf.write_text(yaml_text)
    with pytest.raises(UsageError) as info:
        cli.resolve(parse(["--config", str(conf)]), env={})
    for w in words:
        assert w in str(info.value)


def test_bad_env_value_is_a_usage_error():
    with pytest.raises(UsageError, match="--scrape-timeout"):
        cli.resolve(parse([]), env={"COREDNS_ANOMALY_SCRAPE_TIMEOUT": "soon"})


@pytest.mark.parametrize("shard", ["3/3", "1", "a/b", "-1/2", "0/0", ""])
def test_bad_shard_is_a_usage_error(shard):
    cfg = cli.resolve(parse([f"--shard={shard}"]), env={})
    with pytest.raises(UsageError, match="--shard"):
        cli.settings_from(cfg)


def test_settings_from_checks_auth_pairs(tmp_path):
    with pytest.raises(UsageError, match="--basic-auth-password-file"):
        cli.settings_from(cli.resolve(parse(["--basic-auth-user", "u"]), env={}))
    with pytest.raises(UsageError, match="go together"):
        cli.settings_from(cli.resolve(parse(["--cert-file", "c.pem"]), env={}))
    with pytest.raises(UsageError, match="--bearer-token-file"):
        cli.settings_from(cli.resolve(parse(["--bearer-token-file", str(tmp_path / "nope")]), env={}))  # fmt: skip
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "pw").write_text("pw\n")
    s = cli.settings_from(cli.resolve(parse(["--bearer-token-file", str(tmp_path / "token"), "--basic-auth-user", "u", "--basic-auth-password-file", str(tmp_path / "pw"), "--shard", " 1 / 3 "]), env={}))  # fmt: skip
    assert s.http.bearer_token == "s3cret" and s.http.basic_auth == ("u", "pw")
    assert s.shard == (1, 3)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--shard", "5/2"], ["--shard 5/2"]),
        (["--config", "{cfg}"], ["unknown keys ['bogus']"]),
    ],
)
def test_the_cli_exits_2_with_a_clear_usage_error(tmp_path, argv, words):
    (tmp_path / "c.yml").write_text("bogus: 1\n")
    argv = [a.replace("{cfg}", str(tmp_path / "c.yml")) for a in argv]
    r = subprocess.run(
        [str(ROOT / ".venv/bin/coredns-anomaly"), "exporter", "--target", "127.0.0.1:1", *argv],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "error:" in r.stderr
    for w in words:
        assert w in r.stderr


def test_nothing_to_score_exits_2():
    r = subprocess.run(
        [str(ROOT / ".venv/bin/coredns-anomaly"), "exporter", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and "nothing to score" in r.stderr and "Traceback" not in r.stderr


# -- shard.py ----------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "1", "1/", "/3", "a/3", "1/b", "3/3", "4/3", "0/0", "-1/3", "1.5/3", "1/3/4", None])  # fmt: skip
def test_parse_shard_errors(text):
    with pytest.raises(ValueError, match="--shard"):
        parse_shard(text)


def test_parse_shard_accepts():
    assert parse_shard("0/1") == (0, 1) and parse_shard(" 2 / 5 ") == (2, 5)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_every_address(n):
    addrs = [f"10.0.{i // 250}.{i % 250}:9153" for i in range(1000)] + ["[::1]:9153", "coredns-0.kube-system:9153"]  # fmt: skip
    owners = {a: [i for i in range(n) if owns(a, (i, n))] for a in addrs}
    assert all(len(o) == 1 for o in owners.values()), "each address in exactly one shard"
    sizes = [sum(1 for o in owners.values() if o == [i]) for i in range(n)]
    assert min(sizes) > len(addrs) / n * 0.8, sizes  # and the split is roughly even


def test_hashmod_matches_prometheus():
    # Prometheus relabel hashmod: md5, last 8 bytes big-endian, mod n (model/relabel/relabel.go)
    import hashlib

    for a in ("10.0.0.1:9153", "coredns:9153", ""):
        d = hashlib.md5(a.encode()).digest()
        assert hashmod(a, 1000) == int.from_bytes(d[8:16], "big") % 1000


def test_targets_are_keyed_like_prometheus_instances():
    assert make_target("10.0.0.1:9153").instance == "10.0.0.1:9153"
    assert make_target("10.0.0.1:9153").url == "http://10.0.0.1:9153/metrics"
    assert make_target("https://dns.example/m").instance == "dns.example:443"
    assert make_target("http://[::1]:9153/metrics").instance == "[::1]:9153"
    for bad in ("", "ftp://x:1", "http://:9153", "10.0.0.1:99999"):
        with pytest.raises(ValueError):
            make_target(bad)
