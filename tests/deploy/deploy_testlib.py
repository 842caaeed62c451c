"""Helpers for the deploy suite (a uniquely named module: conftest names collide across suites)."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# Written by the rule generator, not by hand; parsed when present.
GENERATED = {"prometheusrule.yaml"}


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: run `make setup` (scripts/bootstrap.sh)")
    return path


@dataclass
class K8sObject:
    path: Path
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]


def container(k8s: dict, deployment: str) -> dict:
    (c,) = k8s[("Deployment", deployment)]["spec"]["template"]["spec"]["containers"]
    return c


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, op: str) -> list[str]:
        return [arg for o, arg in self.instructions if o == op]


def parse_dockerfile(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARGs, stages by name), continuation lines joined."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op, rest = op.upper(), " ".join(rest.split())
        if op == "FROM":
            m = re.fullmatch(r"(\S+) AS (\S+)", rest, re.I)
            assert m, f"every stage is named: FROM {rest}"
            current = stages[m.group(2)] = Stage(m.group(2), m.group(1))
        elif current is None:
            assert op == "ARG", f"only ARG before the first FROM, got {op}"
            name, _, value = rest.partition("=")
            args[name] = value
        else:
            current.instructions.append((op, rest))
    return args, stages
