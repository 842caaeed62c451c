"""Model hot reload: a bad bundle is refused while the old one keeps serving, a good one is
swapped in between steps, no step is dropped; SIGHUP reloads and SIGTERM stops the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import requests
from exporter_testlib import (  # fmt: skip
    ROOT,
    Timeline,
    bump_mtime,
    closed_port,
    copy_model,
    metrics_text,
    parse_metrics,
    prefill,
    value,
)


def set_meta(model, **changes) -> None:
    meta = json.loads((model / "model.json").read_text())
    for dotted, v in changes.items():
        cur = meta
        *parents, last = dotted.split("__")
        for p in parents:
            cur = cur[p]
        cur[last] = v
    (model / "model.json").write_text(json.dumps(meta, indent=1))
    bump_mtime(model / "model.json")


def expected_score(x, instance: str) -> float:
    """The normalised score the engine should have published: the model's raw score of the
    instance's window over the serving bundle's threshold."""
    b, st = x.engine.bundle, x.engine.states[instance]
    raw = x.engine.runtime.run(st.baseline.normalize(st.rows)[None])["score"]
    return float(raw[0]) / b.threshold


@pytest.fixture
def reloading(tmp_path, page_server, clock, make_exporter, bundle):
    """An exporter serving a copy of models/default, scoring a target under upstream latency
    (the shipped model flags it, scores ~1.7), its window already full."""
    model = copy_model(tmp_path / "model")
    tl = Timeline("upstream_latency")
    served = page_server.timeline("/metrics", tl)
    x = make_exporter(model=str(model), targets=[page_server.instance()])
    inst = page_server.instance()
    scores = []

    def step() -> dict:
        clock.now += bundle.step_seconds
        before = x.steps
        x.run_step()
        assert x.steps == before + 1
        m = parse_metrics(metrics_text(x))
        s = value(m, "coredns_anomaly_score", instance=inst)
        assert s is not None, f"step {x.steps}: no score (a dropped step)"
        scores.append(s)
        return m

    x.run_step()  # one step over HTTP, the rest of the window fed directly
    prefill(x, clock, {inst: (tl, served)}, bundle.window - 2)
    return x, model, inst, step, scores


def reloads(m) -> tuple[float, float, float]:
    return (
        value(m, "coredns_anomaly_model_reloads_total", result="success"),
        value(m, "coredns_anomaly_model_reloads_total", result="failure"),
        value(m, "coredns_anomaly_model_last_reload_successful"),
    )


def info_sha(m) -> str:
    (key,) = [k for k in m if k[0] == "coredns_anomaly_model_info"]
    return dict(key[1])["sha256"]


def test_bad_bundle_is_refused_then_a_good_one_swaps_in(reloading, bundle):
    x, model, inst, step, scores = reloading
    for _ in range(bundle.debounce_steps):  # anomalous from the first full window on
        m = step()
    assert reloads(m) == (0, 0, 1) and info_sha(m) == bundle.sha256
    assert value(m, "coredns_anomaly", instance=inst) == 1.0

    # (a) a bundle whose checksum does not match: refused, the old model keeps serving
    set_meta(model, sha256="f" * 64)
    m = step()
    assert reloads(m) == (0, 1, 0)
    assert info_sha(m) == bundle.sha256 and x.engine.bundle.threshold == bundle.threshold
    assert value(m, "coredns_anomaly", instance=inst) == 1.0
    m = step()  # not retried until the files change again
    assert reloads(m) == (0, 1, 0)

    # (b) a genuinely different valid bundle: the same model.tflite, a threshold f times higher
    f = 10 * max(scores)
    set_meta(model, sha256=bundle.sha256, decision__threshold=f * bundle.threshold)
    m = step()
    assert reloads(m) == (1, 1, 1)
    assert x.engine.bundle.threshold == pytest.approx(f * bundle.threshold)
    s = value(m, "coredns_anomaly_score", instance=inst)
    assert s == pytest.approx(expected_score(x, inst), rel=1e-5)
    assert s < 1.0 <= f * s, "the score is normalised by the new threshold"
    assert value(m, "coredns_anomaly", instance=inst) == 0.0
    n = bundle.debounce_steps + 3  # the steps above, none dropped, after one warm-up step
    assert x.steps == 1 + n and len(scores) == n


def test_a_changed_model_json_is_reloaded_even_with_the_same_tflite(reloading, bundle):
    # sha256 covers model.tflite only: a new threshold (or scaler, centroids, debounce) with
    # the same weights is still a different bundle and must be served.
    x, model, inst, step, scores = reloading
    step()
    set_meta(model, decision__threshold=4 * bundle.threshold)
    m = step()
    assert reloads(m) == (1, 0, 1)
    assert x.engine.bundle.threshold == pytest.approx(4 * bundle.threshold)
    assert value(m, "coredns_anomaly", instance=inst) == 0.0 and scores[-2] >= 1.0
    assert value(m, "coredns_anomaly_score", instance=inst) == pytest.approx(
        expected_score(x, inst), rel=1e-5
    )
    assert scores[-1] < scores[-2] / 3


def test_touching_the_files_is_not_a_reload(reloading):
    x, model, inst, step, _ = reloading
    step()
    (model / "model.json").write_text((model / "model.json").read_text())  # same content
    bump_mtime(model / "model.json")
    m = step()
    assert reloads(m) == (0, 0, 1)


def test_a_missing_model_file_mid_copy_is_a_failure_then_recovers(reloading, bundle):
    x, model, inst, step, _ = reloading
    flat = (model / "model.tflite").read_bytes()
    (model / "model.tflite").unlink()
    m = step()
    assert reloads(m) == (0, 1, 0) and info_sha(m) == bundle.sha256
    (model / "model.tflite").write_bytes(flat)
    bump_mtime(model / "model.tflite")
    m = step()
    assert reloads(m) == (1, 1, 1)


def metrics_of(port: int) -> dict:
    return parse_metrics(requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)


def wait_until(fn, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the exporter exited ({proc.returncode}) while waiting for {what}")
        try:
            last = fn()
            if last:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}: {last}")


@pytest.fixture
def cli(tmp_path, page_server):
    """The real `coredns-anomaly exporter` on a free loopback port, scraping a page server
    that serves real pages (a real CoreDNS is exercised in the Prometheus integration test)."""
    model = copy_model(tmp_path / "model")
    # a 0.5 s step (metadata only: same weights), so reloads show up without 2 s waits
    meta = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**meta, "step_seconds": 0.5}))
    page_server.timeline("/metrics", Timeline("normal"))
    port = closed_port()
    log = open(tmp_path / "exporter.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(ROOT / ".venv/bin/coredns-anomaly"), "exporter", "--model", str(model),
         "--target", page_server.instance(), "--listen", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
    )  # fmt: skip
    try:
        wait_until(
            lambda: requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok,
            30,
            "ready",
            proc,
        )
        yield proc, port, model, tmp_path / "exporter.log"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()


def test_sighup_reloads_and_sigterm_exits_zero(cli):
    proc, port, model, logfile = cli
    wait_until(lambda: value(metrics_of(port), "coredns_anomaly_steps_total") >= 1, 10, "a step", proc)  # fmt: skip
    assert reloads(metrics_of(port))[:2] == (0, 0)
    proc.send_signal(signal.SIGHUP)
    m = wait_until(
        lambda: (m := metrics_of(port)) and value(m, "coredns_anomaly_model_reloads_total", result="success") == 1 and m,  # fmt: skip
        10, "the SIGHUP reload to be counted", proc,
    )  # fmt: skip
    assert reloads(m) == (1, 0, 1)
    # a bad bundle on disk: refused at the next step, and SIGHUP retries (and refuses) it
    set_meta(model, sha256="0" * 64)
    wait_until(lambda: reloads(metrics_of(port))[1] == 1, 10, "the refused bundle", proc)
    proc.send_signal(signal.SIGHUP)
    m = wait_until(lambda: (m := metrics_of(port)) and reloads(m)[1] == 2 and m, 10, "a refused SIGHUP", proc)  # fmt: skip
    assert reloads(m) == (1, 2, 0)
    assert proc.poll() is None, "a refused bundle must not stop the exporter"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert time.monotonic() - t0 < 5, "SIGTERM must stop the exporter promptly"
    out = logfile.read_text()
    assert "Traceback" not in out, out
    assert "model reload refused" in out and "sha256" in out


def test_sigint_exits_zero_too(cli):
    proc, *_ = cli
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
