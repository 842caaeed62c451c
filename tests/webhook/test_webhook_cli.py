"""`coredns-anomaly webhook ...` and settings resolution (flags > env > file > defaults)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from webhook_testlib import BEARER, TOKEN, alert, payload

from coredns_anomaly.cli import main
from coredns_anomaly.webhook.config import ConfigError, Settings, load_settings
from coredns_anomaly.webhook.labels import read_label_file


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from coredns_anomaly.cli import main; sys.exit(main())"
    base = {
        k: v
        for k, v in __import__("os").environ.items()
        if not k.startswith("COREDNS_ANOMALY_WEBHOOK_")
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_serve_refuses_without_credentials(tmp_path):
    r = run_cli("webhook", "serve", "--db", str(tmp_path / "w.db"))
    assert r.returncode == 2
    assert "no credentials configured; refusing to start" in r.stderr
    assert "--allow-unauthenticated" in r.stderr


def test_serve_check_with_credentials_from_env_and_files(tmp_path):
    (tmp_path / "t").write_text("tok\n")
    r = run_cli(
        "webhook",
        "serve",
        "--check",
        "--db",
        str(tmp_path / "w.db"),
        "--bearer-token-file",
        str(tmp_path / "t"),
    )
    assert r.returncode == 0, r.stderr
    assert "auth required" in r.stdout
    r = run_cli(
        "webhook",
        "serve",
        "--check",
        "--db",
        str(tmp_path / "w.db"),
        env={"COREDNS_ANOMALY_WEBHOOK_BEARER_TOKEN": "tok"},
    )
    assert r.returncode == 0, r.stderr
    r = run_cli(
        "webhook", "serve", "--check", "--db", str(tmp_path / "w.db"), "--allow-unauthenticated"
    )
    assert r.returncode == 0 and "auth open" in r.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bearer-token-file", "/nonexistent/token"], "cannot read bearer token file"),
        (["--basic-auth-username", "u"], "basic auth needs both"),
        (["--listen", "nowhere", "--allow-unauthenticated"], "HOST:PORT"),
        (["--workers", "0", "--allow-unauthenticated"], "at least 1"),
        (["--db", "/nonexistent/dir/w.db", "--allow-unauthenticated"], "does not exist"),
    ],
)
def test_serve_usage_errors(tmp_path, args, needle):
    argv = ["webhook", "serve", "--check", *args]
    if "--db" not in args:
        argv += ["--db", str(tmp_path / "w.db")]
    r = run_cli(*argv)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_precedence_defaults_file_env_flags(tmp_path):
    cfg = tmp_path / "webhook.yml"
    cfg.write_text(
        "listen: 127.0.0.1:1111\nworkers: 3\nthreads: 7\nanomaly-classes: [a, b]\nallow_unauthenticated: yes\n"
    )
    env = {"COREDNS_ANOMALY_WEBHOOK_CONFIG": str(cfg), "COREDNS_ANOMALY_WEBHOOK_WORKERS": "5"}
    s = load_settings({"threads": 9}, env=env)
    assert (s.listen, s.workers, s.threads, s.anomaly_classes, s.allow_unauthenticated) == (
        "127.0.0.1:1111",
        5,
        9,
        ("a", "b"),
        True,
    )
    assert s.db == Settings().db and s.host_port == ("127.0.0.1", 1111)
    # Round trip through the environment, the way the CLI hands flags to gunicorn's workers.
    assert load_settings(env=s.to_env()) == s


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("colour: blue\n", "unknown setting 'colour'"),
        ("bearer_token: hunter2\n", "put bearer_token in a file"),
        ("workers: many\n", "workers"),
        ("- a\n- b\n", "expected a mapping"),
        ("listen: [\n", "not valid YAML"),
    ],
)
def test_config_file_errors(tmp_path, text, needle):
    cfg = tmp_path / "c.yml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings({"config": str(cfg)}, env={})
    assert needle in str(exc.value)


def test_env_errors_name_the_variable():
    with pytest.raises(ConfigError, match="COREDNS_ANOMALY_WEBHOOK_ALLOW_UNAUTHENTICATED"):
        load_settings(env={"COREDNS_ANOMALY_WEBHOOK_ALLOW_UNAUTHENTICATED": "perhaps"})


def test_export_labels_command(tmp_path, capsys, monkeypatch):
    from coredns_anomaly.webhook.app import create_app

    db = tmp_path / "w.db"
    app = create_app(Settings(db=str(db), bearer_token=TOKEN))
    c = app.test_client()
    c.post(
        "/webhook",
        json=payload(alert("a", status="resolved", ends_at="2026-11-22T02:00:00Z")),
        headers=BEARER,
    )
    c.post(
        "/webhook",
        json=payload(alert("m", alertname="CoreDNSErrorsHigh", instance="10.0.0.9:9153")),
        headers=BEARER,
    )
    store = app.extensions["coredns_anomaly"]["store"]
    store.set_verdict(
        "a", "2026-11-22T01:00:00.123456Z", "anomaly", anomaly_class="upstream_latency"
    )
    monkeypatch.delenv("COREDNS_ANOMALY_WEBHOOK_DB", raising=False)

    out = tmp_path / "labels.csv"
    assert main(["webhook", "export-labels", "--db", str(db), "--out", str(out)]) == 0
    assert [r.fingerprint for r in read_label_file(out)] == ["a"]
    capsys.readouterr()
    assert main(["webhook", "export-labels", "--db", str(db), "--include-weak"]) == 0
    weak = read_label_file(io.StringIO(capsys.readouterr().out))
    assert {(r.fingerprint, r.source) for r in weak} == {("a", "verified"), ("m", "weak")}
    assert main(["webhook", "export-labels", "--db", str(tmp_path / "missing.db")]) == 2
    assert main(["webhook", "export-labels", "--db", str(db), "--since", "someday"]) == 2


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["webhook", "--help"])
    text = capsys.readouterr().out
    assert "serve" in text and "export-labels" in text


def test_cli_module_imports_no_flask():
    code = (
        "import sys, argparse; import coredns_anomaly.webhook.cli as c; "
        "p = argparse.ArgumentParser(); c.register(p.add_subparsers()); "
        "print(json.dumps([m for m in ('flask', 'gunicorn', 'jsonschema') if m in sys.modules]))"
    )
    r = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True
    )
    assert json.loads(r.stdout) == [], r.stderr
