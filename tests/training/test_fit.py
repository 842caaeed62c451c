"""coredns-anomaly fit: the EVT threshold, the refusals, and fault-signature injection (fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from coredns_anomaly.exporter.baseline import BaselineSpec
from coredns_anomaly.exporter.features import FEATURE_NAMES
from coredns_anomaly.training import evt, inject
from coredns_anomaly.training.fit import FitConfig, FitError, fit, infer_step, longest_run
from coredns_anomaly.training.series import NORMAL, Series

F = len(FEATURE_NAMES)


# -- the tail ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dist, analytic",
    [
        (lambda rng, n: rng.exponential(1.0, n), lambda p: -np.log(p)),
        (lambda rng, n: rng.normal(0.0, 1.0, n), lambda p: stats.norm.isf(p)),
    ],
    ids=["exponential", "normal"],
)
def test_evt_threshold_matches_analytic_quantile(dist, analytic):
    rng = np.random.default_rng(0)
    scores = dist(rng, 200_000)
    tail = evt.fit_tail(scores, 0.98)
    assert tail.method == "gpd"
    step = 30.0
    p = evt.per_step_probability(1.0, step)  # 1 alarm per day at 30 s: 3.5e-4 per step
    thr, how, expected = evt.threshold_for_budget(tail, 1.0, step)
    assert how == "gpd"
    assert thr == pytest.approx(analytic(p), rel=0.05)
    assert expected == pytest.approx(1.0, rel=1e-6)
    # Far beyond the data (1 per 30 days), the fit still lands near the truth.
    thr30, _, _ = evt.threshold_for_budget(tail, 1 / 30, step)
    assert thr30 == pytest.approx(analytic(p / 30), rel=0.1)


def test_evt_shape_of_an_exponential_tail_is_near_zero():
    tail = evt.fit_tail(np.random.default_rng(1).exponential(2.0, 100_000), 0.98)
    assert abs(tail.xi) < 0.1
    assert tail.sigma == pytest.approx(2.0, rel=0.1)


def test_evt_fallbacks_are_named():
    rng = np.random.default_rng(2)
    few = evt.fit_tail(rng.exponential(1.0, 1500), 0.98)  # 30 exceedances
    assert few.method == "exponential" and "exceedances" in few.note
    thr, how, exp = evt.threshold_for_budget(few, 1.0, 30.0)
    assert how == "exponential" and exp == pytest.approx(1.0)
    tiny = evt.fit_tail(rng.exponential(1.0, 200), 0.98)  # 4 exceedances
    thr, how, exp = evt.threshold_for_budget(tiny, 1.0, 30.0)
    assert how == "max_rule" and exp is None
    assert thr == pytest.approx(evt.MAX_RULE_FACTOR * tiny.score_max)
    loose = evt.fit_tail(rng.exponential(1.0, 10_000), 0.98)
    thr, how, _ = evt.threshold_for_budget(loose, 2000.0, 30.0)  # p = 0.69 > zeta
    assert how == "empirical"


# -- refusals ------------------------------------------------------------------------------


def series(name: str, steps: int, step: float, seed: int = 0, labels=None) -> Series:
    rng = np.random.default_rng(seed)
    t = 1.79e9 + np.arange(steps) * step
    X = 1.0 + 0.1 * rng.normal(size=(steps, F))
    lab = np.full(steps, NORMAL, object) if labels is None else labels
    return Series(name, t, X, lab, FEATURE_NAMES)


def test_mixed_steps_name_the_instances(tmp_path):
    fleet = [series("a:9153", 600, 15.0), series("b:9153", 600, 30.0), series("c:9153", 600, 30.0)]
    with pytest.raises(
        FitError, match=r"mixed scrape steps \(15 s: a:9153 \(1\); 30 s: b:9153, c:9153"
    ):
        fit(fleet, FitConfig(), tmp_path / "b")


def test_irregular_intervals_are_refused():
    s = series("a:9153", 600, 30.0)
    s.times = s.times + np.random.default_rng(0).uniform(-12, 12, len(s.times))
    s.times.sort()
    with pytest.raises(FitError, match="scrape intervals disagree"):
        infer_step([s])


def test_gaps_are_not_irregular():
    s = series("a:9153", 600, 30.0)
    keep = np.ones(600, bool)
    keep[100:140] = False  # the target was down for 20 min: no rows
    assert infer_step([s.slice(0, 600)]) == pytest.approx(30.0)
    s2 = Series("a", s.times[keep], s.X[keep], s.labels[keep], FEATURE_NAMES)
    assert infer_step([s2]) == pytest.approx(30.0)


def test_too_few_steps_gives_the_numbers(tmp_path):
    fleet = [series("a:9153", 120, 30.0), series("b:9153", 100, 30.0)]  # 1 h at 30 s
    with pytest.raises(FitError, match=r"too few steps: .*>= 2 h.*longest has 1.00 h, 120 steps"):
        fit(fleet, FitConfig(), tmp_path / "b")


def test_no_healthy_stretch(tmp_path):
    steps = 600  # 5 h at 30 s
    lab = np.full(steps, NORMAL, object)
    for a in range(0, steps, 50):
        lab[a + 30 : a + 50] = "upstream_latency"  # 30 healthy steps, then 20 labelled
    fleet = [
        series("a:9153", steps, 30.0, labels=lab),
        series("b:9153", steps, 30.0, labels=lab.copy()),
    ]
    with pytest.raises(
        FitError, match=r"no healthy stretch: no instance has 80 consecutive .*longest run is 30"
    ):
        fit(fleet, FitConfig(), tmp_path / "b")
    down = series("c:9153", steps, 30.0)
    down.X[::20] = np.nan  # down every 10 min
    with pytest.raises(FitError, match="no healthy stretch"):
        fit([down], FitConfig(), tmp_path / "b")


def test_longest_run():
    assert longest_run(np.array([1, 1, 0, 1, 1, 1, 0], bool)) == 3
    assert longest_run(np.zeros(4, bool)) == 0


def test_cli_exits_2_with_one_line(capsys):
    from coredns_anomaly.cli import main

    assert main(["fit", "--out", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coredns-anomaly fit: error: give either --dataset") and "\n" not in err


# -- injection -----------------------------------------------------------------------------


def test_resample_stretches_short_lab_episodes():
    z = np.zeros((20, F))  # 40 s at 2 s
    z[:, 3] = np.linspace(0, 10, 20)
    sig = inject.Signature("upstream_latency", "lab", z, np.zeros(20, bool), 2.0)
    r = inject.resample(sig, 30.0, min_steps=6)
    assert inject.stretch_factor(30.0) == 6.0
    assert len(r.z) == 8  # 40 s x 6 = 240 s = 8 steps of 30 s
    assert r.z[0, 3] < r.z[-1, 3] and r.z[-1, 3] <= 10
    assert len(inject.resample(sig, 2.0).z) == 20  # at the lab's own step: unchanged


def test_injection_adds_signature_at_the_right_place_and_recall_is_counted():
    spec = BaselineSpec()
    s = series("fleet:9153", 400, 30.0, seed=3)
    from coredns_anomaly.training.series import attach_baseline

    attach_baseline(s, spec)
    k = FEATURE_NAMES.index(next(n for n in FEATURE_NAMES if "latency" in n or "duration" in n))
    z = np.zeros((6, F))
    z[:, k] = 8.0
    big = inject.Signature("upstream_latency", "lab:a", z, np.zeros(6, bool), 30.0)
    none = inject.Signature("cache_thrash", "lab:b", np.zeros((6, F)), np.zeros(6, bool), 30.0)
    healthy = [s.baseline.warm & (s.labels == NORMAL)]
    placements = inject.plan(healthy, [big, none], window=8, rng=np.random.default_rng(0))
    assert len(placements) == 2 and {p[2] for p in placements} == {0, 1}
    starts = sorted(p[1] for p in placements)
    assert starts[1] - starts[0] >= 6 + 8 + 2  # episode + context of the next: no overlap
    copies, inj = inject.inject_all([s], [big, none], placements, spec)
    c = copies[0]
    d = next(d for d in inj if d.cls == "upstream_latency")
    assert d.end - d.start == 6
    added = c.X - s.X
    assert np.allclose(added[d.start : d.end, k], 8.0 * s.baseline.spread[d.start, k])
    others = np.ones(len(s.times), bool)
    others[d.start : d.end] = False
    assert np.allclose(added[others], 0.0)
    assert (c.labels[d.start : d.end] == "upstream_latency").all()
    assert (s.labels == NORMAL).all()  # the original is untouched
    # The copy's baseline was replayed with the injected steps flagged: it does not learn them.
    assert c.baseline is not s.baseline
    assert np.allclose(c.baseline.loc[d.start : d.end + 1], c.baseline.loc[d.start], equal_nan=True)

    class Stub:  # scores |z| of feature k against the copy's own baseline, one per step
        def predict(self, data):
            (x,) = data
            zz = np.abs((x.X[:, k] - x.baseline.loc[:, k]) / x.baseline.spread[:, k])
            return type("P", (), {"times": x.times, "raw": np.nan_to_num(zz)})()

    rows = inject.detections(Stub(), copies, inj, threshold=4.0, debounce_steps=2)
    per = inject.recall_by_class(rows)
    assert per["upstream_latency"] == {
        "episodes": 1,
        "detected": 1,
        "recall": 1.0,
        "median_delay_steps": 1.0,
    }
    assert per["cache_thrash"]["recall"] == 0.0
    assert inject.overall(rows) == 0.5


def test_signatures_from_a_lab_series_are_in_baseline_units():
    spec = BaselineSpec()
    steps = 800  # 2 s step: warm after 600 s = 300 steps
    lab = np.full(steps, NORMAL, object)
    lab[500:520] = "upstream_servfail"
    s = series("coredns-0", steps, 2.0, labels=lab)
    s.X[500:520, 0] += 1.0
    sigs = inject.signatures([s], spec, origin="lab-v1:")
    assert (
        len(sigs) == 1
        and sigs[0].cls == "upstream_servfail"
        and sigs[0].origin.startswith("lab-v1:")
    )
    from coredns_anomaly.exporter.baseline import replay

    rep = replay(s.X, s.times, lab != NORMAL, spec)
    assert np.allclose(sigs[0].z[:, 0], (s.X[500:520, 0] - rep.loc[500, 0]) / rep.spread[500, 0])


def test_cli_prometheus_path_collects_with_auth_then_fits(tmp_path, capsys):
    """--prometheus reuses collect's client and auth; 1 h of data is then refused as too short."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs, urlparse

    from coredns_anomaly.cli import main

    seen = []

    class Gateway(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            metric = {"__name__": "coredns_dns_requests_total", "job": "coredns"}
            if self.path.startswith("/api/v1/series"):
                data = [dict(metric, instance=i) for i in ("a:9153", "b:9153")]
            else:
                start, end, step = float(q["start"]), float(q["end"]), float(q["step"])
                vals = [
                    [start + k * step, str(10 * k)] for k in range(int((end - start) / step) + 1)
                ]
                data = {"resultType": "matrix", "result": [
                    {"metric": dict(metric, instance=i, proto="udp"), "values": vals}
                    for i in ("a:9153", "b:9153")
                ]}  # fmt: skip
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    try:
        rc = main([
            "fit", "--prometheus", f"http://127.0.0.1:{srv.server_port}", "--start", "1790000000",
            "--end", "1790003600", "--step", "30", "--bearer-token-file", str(token),
            "--out", str(tmp_path / "b"), "--collect-out", str(tmp_path / "ds"),
        ])  # fmt: skip
    finally:
        srv.shutdown()
    assert rc == 2
    assert seen and all(h == "Bearer tok-1" for h in seen)
    assert "too few steps" in capsys.readouterr().err
    assert (tmp_path / "ds" / "samples.parquet").is_file()
