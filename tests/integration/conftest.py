"""Fixtures that start real components; every test here is marked `integration`."""

from __future__ import annotations

import shutil

import pytest

from coredns_anomaly.lab import faults
from coredns_anomaly.lab.lab import Lab, LabSettings


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} is not installed: run `make setup` (scripts/bootstrap.sh installs it)"
        )
    return path


@pytest.fixture(scope="session")
def lab_recording(tmp_path_factory):
    """One short real lab run shared by the lab tests: latency, attack, restart on one CoreDNS."""
    schedule = [
        faults.Item(0, "upstream_latency", 14.0, 14.0, 0.6, True),
        faults.Item(0, "random_subdomain", 38.0, 14.0, 0.5, True),
        faults.Item(0, "restart", 62.0, 0.0, 0.0, False),
        faults.Item(0, "end", 74.0, 0.0, 0.0, False),
    ]
    workdir = tmp_path_factory.mktemp("lab")
    with Lab(
        LabSettings(instances=1, step=1.0, seed=3, base_rates=(120.0,), workdir=workdir)
    ) as lab:
        ds = lab.record(schedule)
    return ds
