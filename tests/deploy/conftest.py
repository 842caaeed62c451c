"""Fixtures for the deploy suite: the repository's manifests and Dockerfile, parsed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_testlib import K8S, ROOT, K8sObject, Stage, parse_dockerfile, require


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require("amtool")


@pytest.fixture(scope="session")
def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="session")
def k8s_objects(k8s_files) -> list[K8sObject]:
    out = []
    for path in k8s_files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                out.append(K8sObject(path, doc))
    return out


@pytest.fixture(scope="session")
def k8s(k8s_objects) -> dict:
    """(kind, name) -> object document."""
    return {(o.kind, o.name): o.doc for o in k8s_objects}


@pytest.fixture(scope="session")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="session")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())
