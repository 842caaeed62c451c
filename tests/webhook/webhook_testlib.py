"""Helpers shared by the webhook tests (a unique module name: tests/ has no packages)."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from coredns_anomaly.lab.deliveries import alert, payload

__all__ = ["alert", "payload"]  # the one Alertmanager shape, re-exported for the tests

TOKEN = "test-token-0123456789"
USER, PASSWORD = "engineer", "correct horse battery staple"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def bcrypt_hash(password: bytes) -> str:
    import bcrypt

    return bcrypt.hashpw(password, bcrypt.gensalt(4)).decode()  # cost 4: fast tests


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI), or skip."""
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    from coredns_anomaly.loop.tls import openssl_cert

    return openssl_cert(directory, "tls")
