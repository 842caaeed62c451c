"""Fixtures for the rules role: the real promtool, the CLI in-process, model bundles to vary."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from coredns_anomaly.cli import main

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "rules" / "generated"
BUNDLE = ROOT / "models" / "default"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (or make setup)")
    return path


@pytest.fixture(scope="session")
def run_promtool(promtool):
    def run(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [promtool, *map(str, args)],
            capture_output=True,
            text=True,
            env={"GOMAXPROCS": "1", "PATH": "/usr/bin:/bin"},
            timeout=120,
        )

    return run


@pytest.fixture
def cli(capsys):
    """Run `coredns-anomaly ARGS` in-process; returns (exit code, stderr)."""

    def run(*args: str | Path) -> tuple[int, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = int(exc.code or 0)
        return code, capsys.readouterr().err

    return run


@pytest.fixture
def bundle(tmp_path):
    """A copy of the shipped model.json with edits: bundle(kind=..., **{"a.b": value or DELETE})."""

    def make(**edits) -> Path:
        meta = json.loads((BUNDLE / "model.json").read_text())
        for dotted, value in edits.items():
            *parents, last = dotted.split("__")
            cur = meta
            for p in parents:
                cur = cur[p]
            if value is DELETE:
                del cur[last]
            else:
                cur[last] = value
        out = tmp_path / "bundle"
        out.mkdir(exist_ok=True)
        (out / "model.json").write_text(json.dumps(meta))
        return out

    return make


DELETE = object()


@pytest.fixture(scope="session")
def delete():
    return DELETE
