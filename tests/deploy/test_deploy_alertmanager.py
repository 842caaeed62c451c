"""deploy/alertmanager: amtool accepts the config; its webhook receiver reaches the webhook's
/webhook with credentials from files."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit

import yaml
from deploy_testlib import DEPLOY, K8S

AM = DEPLOY / "alertmanager" / "alertmanager.yml"


def test_amtool_check_config(amtool):
    res = subprocess.run([amtool, "check-config", str(AM)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_webhook_receiver_points_at_the_webhook_with_file_credentials():
    cfg = yaml.safe_load(AM.read_text())
    receivers = {r["name"]: r for r in cfg["receivers"]}
    (hook,) = receivers["coredns-anomaly-webhook"]["webhook_configs"]
    url = urlsplit(hook["url"])
    svc = yaml.safe_load((K8S / "webhook-service.yaml").read_text())
    assert url.hostname == svc["metadata"]["name"]
    assert url.port == svc["spec"]["ports"][0]["port"] and url.path == "/webhook"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]
    # Secrets from files only: never an inline `credentials:` or `password:`.
    assert auth["authorization"]["type"] == "Bearer"
    assert auth["authorization"]["credentials_file"].startswith("/")
    assert "credentials" not in auth["authorization"] and "basic_auth" not in auth

    # The webhook route continues, so people's receivers still get every alert.
    (route,) = [r for r in cfg["route"]["routes"] if r["receiver"] == "coredns-anomaly-webhook"]
    assert route["continue"] is True
