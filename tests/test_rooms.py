"""The rooms import one way (docs/architecture.md), checked on the source: every import
statement, also the lazy ones inside functions, resolved to its absolute module name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "coredns_anomaly"
HEAVY = ("tensorflow", "keras", "tf_keras")
ROLES = ("training", "loop", "lab", "exporter", "rules", "webhook")

# room folder -> modules (with their submodules) it must never import
FORBIDDEN = {
    "rules": (f"{PACKAGE}.training", f"{PACKAGE}.loop", *HEAVY),
    "exporter": (f"{PACKAGE}.training", f"{PACKAGE}.loop", *HEAVY),
    "webhook": (f"{PACKAGE}.training", f"{PACKAGE}.loop", *HEAVY),
    # the lab records data and runs processes: no model code, and nothing of the loop above it
    "lab": (f"{PACKAGE}.loop", *HEAVY),
    # stdlib only: every role imports the contracts without another role's dependencies
    "contracts": (*(f"{PACKAGE}.{r}" for r in ROLES), "numpy", "yaml", *HEAVY),
}


def imported(path: Path, room: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in a room's file, in line order."""
    package = [PACKAGE, room, *path.relative_to(ROOT / room).parent.parts]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return sorted(out)


def hits(room: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / room).rglob("*.py")):
        for line, mod in imported(path, room):
            if any(mod == f or mod.startswith(f + ".") for f in FORBIDDEN[room]):
                bad.append(f"{path.relative_to(ROOT).as_posix()}:{line} imports {mod}")
    return bad


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_a_room_imports_none_of_what_it_must_not(room):
    assert hits(room) == []


def test_the_check_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    (tmp_path / "rules" / "sub").mkdir(parents=True)
    (tmp_path / "rules" / "sub" / "x.py").write_text(
        "def f():\n    from ...training import pipeline\n    import keras.layers\n"
        "from coredns_anomaly.loop import demo\nfrom .. import classic\nimport numpy\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert hits("rules") == [
        "rules/sub/x.py:2 imports coredns_anomaly.training",
        "rules/sub/x.py:2 imports coredns_anomaly.training.pipeline",
        "rules/sub/x.py:3 imports keras.layers",
        "rules/sub/x.py:4 imports coredns_anomaly.loop",
        "rules/sub/x.py:4 imports coredns_anomaly.loop.demo",
    ]


# What importing each light room's entry points really loads, in a fresh interpreter: the
# statement check above sees only a room's own files, this one also what they pull in.
ENTRY_POINTS = {
    "exporter": ("cli", "service", "engine", "bundle"),
    "webhook": ("app", "cli", "receiver"),
    "rules": ("cli", "anomaly", "classic", "model"),
    "contracts": ("bundle", "names", "thresholds", "signals"),
}


@pytest.mark.parametrize("room", sorted(ENTRY_POINTS))
def test_importing_a_light_room_loads_no_training_and_no_tensorflow(room):
    import json
    import subprocess
    import sys

    mods = [f"{PACKAGE}.{room}.{m}" for m in ENTRY_POINTS[room]]
    code = (
        "import importlib, json, sys\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    bad = [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(f"{PACKAGE}.training")]
    assert bad == [], f"importing {room} loads {bad[:8]}"
