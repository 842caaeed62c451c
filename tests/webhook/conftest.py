"""Fixtures for the webhook suite: an app on a temp store, payload builders, real servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from webhook_testlib import BEARER, PASSWORD, TOKEN, USER

from coredns_anomaly.lab.webhook_server import start_server
from coredns_anomaly.webhook.config import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        db=str(tmp_path / "webhook.db"),
        bearer_token=TOKEN,
        basic_auth_username=USER,
        basic_auth_password=PASSWORD,
        prometheus_url="http://prometheus:9090",
    )


@pytest.fixture
def app(settings: Settings):
    from coredns_anomaly.webhook.app import create_app

    return create_app(settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def store(app):
    return app.extensions["coredns_anomaly"]["store"]


@pytest.fixture
def post(client) -> Callable[..., Any]:
    def _post(body: Any, headers: dict[str, str] | None = None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post(
            "/webhook",
            data=data,
            headers=BEARER if headers is None else headers,
            content_type="application/json",
        )

    return _post


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `coredns-anomaly webhook serve` (gunicorn) on a free loopback port; stopped after."""
    servers = []

    def _start(**kwargs: Any):
        server = start_server(tmp_path / "server", **kwargs)
        servers.append(server)
        return server

    yield _start
    for s in servers:
        s.stop()
