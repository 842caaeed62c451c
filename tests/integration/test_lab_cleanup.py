"""The lab leaves no process behind: on an exception inside it, and on Ctrl-C of the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coredns_anomaly.lab.lab import Lab, LabSettings


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_an_exception_inside_the_lab_stops_every_child(tmp_path):
    pids = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        Lab(LabSettings(instances=1, workdir=tmp_path)) as lab,
    ):
        pids = [lab.upstream.proc.pid, lab.instances[0].front.proc.pid]
        assert all(alive(p) for p in pids)
        raise RuntimeError("boom")
    assert pids and not any(alive(p) for p in pids)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    return [int(x) for x in out.split()]


def test_ctrl_c_of_lab_record_stops_coredns(tmp_path):
    cli = Path(sys.executable).with_name("coredns-anomaly")
    proc = subprocess.Popen(
        [str(cli), "lab", "record", "--preset", "demo", "--out", str(tmp_path / "ds"), "--workdir", str(tmp_path / "w")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # A shell that runs the suite in the background ignores SIGINT, and children inherit
        # that (so Python installs no KeyboardInterrupt handler): restore what a terminal gives.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    kids: list[int] = []
    while time.monotonic() < deadline and len(kids) < 2:
        time.sleep(0.5)
        kids = children_of(proc.pid)
    assert len(kids) >= 2, "CoreDNS front and upstream should be running"
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0
    time.sleep(0.5)
    assert not any(alive(k) for k in kids), out[-2000:]
    assert not (tmp_path / "ds").exists()  # nothing half-written
