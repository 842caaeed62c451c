"""The exporter's cost per step, from 10 to 10,000 targets, on recorded real CoreDNS pages.

    .venv/bin/python bench/exporter_step.py [--targets 10,100,1000,10000] [--out bench/results/exporter_step.json]

Measured in one run, single-threaded (so figures are per core):
1. the page parsers on the real pages in bench/pages: prometheus-client (reference),
   prometheus-client on a pre-filtered page, and the exporter's `parse_needed`;
2. the end-to-end step (parse + features + one batched LiteRT invoke + decisions) for N
   targets fed from memory, steady state after the windows fill; targets per second;
3. inference per window in the engine vs a bare LiteRT call on the same batch (set the input, invoke, read the outputs; invoke alone is reported too), and Keras
   `predict` on the same windows;
4. resident memory of an exporter process with 1,000 targets, served by LiteRT and by
   TensorFlow (each in its own child process).
Pages are fed from memory, not HTTP, so the figures are the exporter's own CPU; scraping is
I/O-bound and runs in a thread pool beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "bench/pages").glob("coredns-normal-*.prom.gz"))


def load_pages(paths=PAGES) -> list[str]:
    return [gzip.decompress(p.read_bytes()).decode() for p in paths]


def median_time(fn, repeat: int) -> float:
    fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench_parsers(pages: list[str]) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    from coredns_anomaly.exporter.features import NEEDED_NAMES
    from coredns_anomaly.exporter.page import parse_needed, parse_page

    def prefiltered(text: str):
        keep = [
            ln for ln in text.split("\n")
            if ln and ln[0] != "#" and ln.split("{", 1)[0].split(" ", 1)[0] in NEEDED_NAMES
        ]  # fmt: skip
        return list(text_string_to_metric_families("\n".join(keep) + "\n"))

    res = {
        "page_bytes": statistics.median(len(p) for p in pages),
        "page_lines": statistics.median(p.count("\n") for p in pages),
    }
    for name, fn in (
        ("prometheus_client", parse_page),
        ("prometheus_client_prefiltered", prefiltered),
        ("parse_needed", lambda t: parse_needed(t, NEEDED_NAMES)),
    ):
        res[name + "_ms"] = 1e3 * statistics.median(
            median_time(lambda p=p, fn=fn: fn(p), 30) for p in pages
        )
    res["speedup_parse_needed"] = res["prometheus_client_ms"] / res["parse_needed_ms"]
    return res


def observations(n: int, step: int, pages: list[str], dt: float):
    from coredns_anomaly.exporter.engine import Observation

    # Each target replays the recorded scrapes in order, offset so targets differ.
    return [
        Observation(
            f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:9153",
            1e9 + step * dt,
            0.0,
            pages[(i + step) % len(pages)],
        )
        for i in range(n)
    ]


def bench_scaling(counts: list[int], steps: int, pages: list[str]) -> list[dict]:
    from coredns_anomaly.exporter.bundle import load_bundle
    from coredns_anomaly.exporter.engine import Engine

    bundle = load_bundle(ROOT / "models/default")
    rows = []
    for n in counts:
        eng = Engine(bundle)
        k = 0
        for _ in range(bundle.window + 1):  # fill the windows
            eng.step(observations(n, k, pages, bundle.step_seconds))
            k += 1
        tot, inf = [], []
        for _ in range(steps):
            obs = observations(n, k, pages, bundle.step_seconds)
            k += 1
            st = eng.step(obs)
            tot.append(st.duration)
            inf.append(st.inference)
        t, i = statistics.median(tot), statistics.median(inf)
        rows.append({
            "targets": n, "scored": st.scored, "step_ms": t * 1e3, "inference_ms": i * 1e3,
            "parse_features_ms": (t - i) * 1e3, "targets_per_second": n / t,
            "us_per_target": t * 1e6 / n,
        })  # fmt: skip
        print(
            f"  {n:>6} targets: step {t * 1e3:8.1f} ms, inference {i * 1e3:6.2f} ms, {n / t:7.0f} targets/s",
            flush=True,
        )
    return rows


def bench_inference(pages: list[str], n: int = 1000) -> tuple[dict, np.ndarray]:
    from coredns_anomaly.exporter.bundle import load_bundle
    from coredns_anomaly.exporter.engine import Engine
    from coredns_anomaly.exporter.runtime import interpreter_class

    bundle = load_bundle(ROOT / "models/default")
    eng = Engine(bundle)
    for k in range(bundle.window + 2):
        eng.step(observations(n, k, pages, bundle.step_seconds))
    ready = [(name, st) for name, st in eng.states.items() if st.ready()]
    Z = np.stack([st.baseline.normalize(st.rows) for _, st in ready])
    Interpreter, _ = interpreter_class()
    it = Interpreter(model_content=bundle.flat, num_threads=1)
    idx = it.get_input_details()[0]["index"]
    outs = [o["index"] for o in it.get_output_details()]
    res = {}
    for name, sel in (("one_window", ready[:1]), ("batch", ready)):
        z = Z[: len(sel)]
        it.resize_tensor_input(idx, list(z.shape))
        it.allocate_tensors()

        def bare(z=z):  # the least any caller does: input in, invoke, outputs out
            it.set_tensor(idx, z)
            it.invoke()
            return [it.get_tensor(o) for o in outs]

        def invoke_only(z=z):
            it.set_tensor(idx, z)
            it.invoke()

        reps = 2000 if len(sel) == 1 else 50  # microsecond calls need many repeats
        bare_s = median_time(bare, reps)
        invoke_s = median_time(invoke_only, reps)
        rt = bundle.runtime()
        run_s = median_time(lambda z=z, rt=rt: rt.run(z), reps)  # the exporter's inference call
        score_s = median_time(lambda s=sel: eng._score(s), reps)  # + standardize, decisions, types
        res[name] = {
            "windows": len(sel), "bare_invoke_us_per_window": bare_s * 1e6 / len(sel),
            "invoke_only_us_per_window": invoke_s * 1e6 / len(sel),
            "exporter_inference_us_per_window": run_s * 1e6 / len(sel),
            "exporter_inference_over_bare": run_s / bare_s,
            "exporter_scoring_us_per_window": score_s * 1e6 / len(sel),
            "exporter_scoring_over_bare": score_s / bare_s,
        }  # fmt: skip
    return res, Z


def bench_keras(Z: np.ndarray, res: dict) -> None:
    from coredns_anomaly.training.ensemble import load_detector

    serving = load_detector(ROOT / "models/default/keras").serving_model()
    for name, z in (("one_window", Z[:1]), ("batch", Z)):
        s = median_time(lambda z=z: serving.predict(z, verbose=0), 10)
        r = res[name]
        r["keras_predict_us_per_window"] = s * 1e6 / len(z)
        r["keras_predict_over_exporter_inference"] = (
            r["keras_predict_us_per_window"] / r["exporter_inference_us_per_window"]
        )


def rss_child(kind: str, n: int) -> None:
    """Run in a child: an exporter holding n targets, served by LiteRT or TensorFlow."""
    from prometheus_client import CollectorRegistry, generate_latest

    from coredns_anomaly.exporter.collector import ExporterCollector
    from coredns_anomaly.exporter.server import make_app  # noqa: F401  (what the process loads)
    from coredns_anomaly.exporter.service import Exporter, Settings

    pages = load_pages()
    x = Exporter(Settings(model=str(ROOT / "models/default"), targets=["127.0.0.1:1"]))
    if kind == "tensorflow":
        from coredns_anomaly.training.ensemble import load_detector

        serving = load_detector(ROOT / "models/default/keras").serving_model()

        class KerasRuntime:
            def run(self, Z):
                return {k: np.asarray(v) for k, v in serving.predict(Z, verbose=0).items()}

        x.engine.runtime = KerasRuntime()
    b = x.engine.bundle
    for k in range(b.window + 3):
        x.engine.step(observations(n, k, pages, b.step_seconds))
    reg = CollectorRegistry()
    reg.register(ExporterCollector(x))
    generate_latest(reg)
    status = Path("/proc/self/status").read_text()
    get = lambda key: int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith(key)))  # noqa: E731
    print(
        json.dumps(
            {
                "rss_mb": get("VmRSS:") / 1024,
                "peak_rss_mb": get("VmHWM:") / 1024,
                "tensorflow_loaded": "tensorflow" in sys.modules,
            }
        )
    )


def bench_rss(n: int) -> dict:
    out = {}
    for kind in ("litert", "tensorflow"):
        p = subprocess.run(
            [sys.executable, __file__, "--rss-child", kind, "--rss-targets", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        out[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["targets"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.loglog(n, [r["step_ms"] for r in rows], "o-", label="whole step")
    a1.loglog(n, [r["parse_features_ms"] for r in rows], "s--", label="parse + features")
    a1.loglog(n, [r["inference_ms"] for r in rows], "^--", label="batched LiteRT invoke")
    a1.set_xlabel("targets")
    a1.set_ylabel("ms per step (one core)")
    a1.legend()
    a1.grid(True, which="both", alpha=0.3)
    a2.semilogx(n, [r["targets_per_second"] for r in rows], "o-")
    a2.axhline(1000, color="red", ls=":", label="target: 1,000/s/core")
    a2.set_xlabel("targets")
    a2.set_ylabel("targets per second per core")
    a2.legend()
    a2.grid(True, alpha=0.3)
    fig.suptitle("coredns-anomaly exporter: cost per step on recorded real CoreDNS pages")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="10,100,1000,10000")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/exporter_step.json")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs/img/exporter-scaling.png")
    ap.add_argument("--rss-child", choices=("litert", "tensorflow"), help=argparse.SUPPRESS)
    ap.add_argument("--rss-targets", type=int, default=1000)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child, args.rss_targets)
        return
    pages = load_pages()
    print("parsers (median ms per real CoreDNS page):", flush=True)
    parsers = bench_parsers(load_pages(sorted((ROOT / "bench/pages").glob("*.prom.gz"))))
    print(json.dumps(parsers, indent=1), flush=True)
    print("step cost:", flush=True)
    rows = bench_scaling([int(x) for x in args.targets.split(",")], args.steps, pages)
    print("inference per window (engine vs bare LiteRT vs Keras predict):", flush=True)
    inference, Z = bench_inference(pages)
    bench_keras(Z, inference)
    print(json.dumps(inference, indent=1), flush=True)
    print("resident memory, 1,000 targets:", flush=True)
    rss = bench_rss(args.rss_targets)
    print(json.dumps(rss, indent=1), flush=True)
    from coredns_anomaly.exporter.runtime import runtime_name

    res = {"runtime": runtime_name(), "parsers": parsers, "scaling": rows, "inference": inference, "rss_1000_targets": rss,
           "load_note": "2-core machine; other work may have been running (see `uptime` in the note)"}  # fmt: skip
    res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    plot(rows, args.plot)
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
