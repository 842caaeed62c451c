"""The exporter process: config -> sources -> engine -> /metrics, one step per model step.

Like blackbox_exporter, nothing is hidden: `Exporter.run_step()` is the whole cycle and is what
the tests and benchmarks drive. The model is watched on disk (and reloaded on SIGHUP); a new
bundle is validated off the step path and swapped between steps, a bad one is refused while
the old one keeps serving.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .backoff import REASON as BACKOFF
from .backoff import Backoff
from .bundle import Bundle, BundleError, load_bundle
from .collector import Snapshot, build_snapshot
from .engine import Engine, Observation
from .page import MAX_PAGE_BYTES
from .promapi import PrometheusSource, PrometheusSourceError
from .ratelog import RateLimitedLog
from .runtime import runtime_name
from .scrape import DEFAULT_SAMPLE_LIMIT, HttpOptions, Scraper
from .targets import TargetSource

log = logging.getLogger("coredns_anomaly.exporter")
ABSENT_STEPS = 150  # ~5 minutes at a 2 s step, like Prometheus' staleness
STATE_SAVE_SECONDS = 60.0  # baselines are written to the state file this often, and at exit
STATE_VERSION = 1
SCRAPE_LOG_SECONDS = 60.0  # a failing target is logged at most this often (always counted)


@dataclass
class Settings:
    model: str
    targets: list[str] = field(default_factory=list)
    targets_file: str | None = None
    prometheus_url: str | None = None
    prometheus_selector: str = '{job="coredns"}'
    prometheus_instance_label: str = "instance"
    shard: tuple[int, int] = (0, 1)
    listen: str = "0.0.0.0:9096"
    scrape_timeout: float | None = None  # default: 0.75 x the model's step
    explain_top: int = 3
    workers: int = 32
    http: HttpOptions = field(default_factory=HttpOptions)
    state_file: str | None = None  # per-instance baselines survive a restart here
    sample_limit: int = DEFAULT_SAMPLE_LIMIT  # a page with more samples is refused (0: none)
    body_size_limit: int = MAX_PAGE_BYTES  # bytes of a page after decompression
    follow_redirects: str = "same-host"  # or any-host, never
    web_config_file: str | None = None  # TLS and basic auth of our listener (webconfig.py)


class StepMismatch(ValueError):
    """The model's step cannot work with the data's step; the message says which bundle to use."""


def _stamp(path: Path) -> tuple:
    out = []
    for name in ("model.json", "model.tflite"):
        try:
            st = (path / name).stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class Exporter:
    def __init__(self, settings: Settings, bundle: Bundle | None = None) -> None:
        self.s = settings
        self.lock = threading.RLock()
        self.model_dir = Path(settings.model)
        self._stamp = _stamp(self.model_dir)
        bundle = bundle or load_bundle(self.model_dir)  # BundleError -> the CLI exits non-zero
        self.engine = Engine(bundle, settings.explain_top)
        self.runtime_name = runtime_name()
        self.reloads: Counter[str] = Counter()
        self.last_reload_ok = True
        self.steps = self.overruns = 0
        self.last_step_seconds = 0.0
        self.last_step_end = 0.0  # time.monotonic() when the last step completed
        self.snapshot = Snapshot(-1, 0)  # what /metrics serves; replaced at the end of a step
        self.scrape_log = RateLimitedLog(log, SCRAPE_LOG_SECONDS)
        # called after each step, outside the lock (the server pre-renders /metrics there)
        self.step_hooks: list[Callable[[], None]] = []
        self.reload_requested = threading.Event()
        self._absent_since: dict[str, float] = {}
        self.backoff = Backoff()  # failing targets are scraped less often (backoff.py)
        self._scraped: set[str] = set()  # instances scraped this step (the backoff's outcomes)
        self._state_saved_at = time.monotonic()
        self._state_warned = False
        self.load_state()
        timeout = settings.scrape_timeout or 0.75 * bundle.step_seconds
        self.source: TargetSource | None = None
        self.prom: PrometheusSource | None = None
        self.scraper: Scraper | None = None
        if settings.prometheus_url:
            self.prom = PrometheusSource(
                settings.prometheus_url, settings.prometheus_selector, timeout, settings.http,
                settings.prometheus_instance_label,
            )  # fmt: skip
        if settings.targets or settings.targets_file:
            self.source = TargetSource(settings.targets, settings.targets_file, settings.shard)
            self.scraper = Scraper(
                timeout, settings.http, settings.workers, max_bytes=settings.body_size_limit,
                sample_limit=settings.sample_limit, redirects=settings.follow_redirects,
            )  # fmt: skip
        if self.prom is None and self.source is None:
            raise ValueError("nothing to score: give --target, --targets-file or --prometheus-url")

    @property
    def step_seconds(self) -> float:
        return self.engine.bundle.step_seconds

    # -- sources ------------------------------------------------------------------
    def observe(self, stop: threading.Event | None = None) -> list[Observation] | None:
        """This step's observations; None if `stop` was set while scraping (shutting down)."""
        obs: list[Observation] = []
        if self.scraper and self.source:
            targets = self.source.targets()
            fleet = {t.instance for t in targets}
            self.backoff.forget(fleet)
            due = [t for t in targets if self.backoff.due(t.instance)]
            due_names = {t.instance for t in due}
            fetched = self.scraper.fetch_all(due, stop, fleet)
            if fetched is None:
                return None
            # A once-late target the step did not wait for proves itself in the scraper
            # (RELEASE_STEPS), so its steps feed the backoff only once it is waited for again.
            self._scraped = {f.target.instance for f in fetched if f.waited}
            now = time.time()
            for t in targets:
                if t.instance not in due_names:
                    why = self.backoff.why(t.instance)
                    obs.append(Observation(t.instance, now, reason=BACKOFF, message=why))
            for f in fetched:
                obs.append(
                    Observation(
                        f.target.instance, f.ts, f.duration, f.text, None, f.reason, f.message
                    )
                )
        if self.prom:
            got = {o.instance for o in obs}
            try:
                fresh = [o for o in self.prom.fetch() if self._owns(o.instance)]
                reason, message = "absent", "no samples for this instance in Prometheus"
            except PrometheusSourceError as exc:
                log.error("%s", exc)
                fresh, reason, message = [], "prometheus_api", str(exc)
            obs.extend(fresh)
            got |= {o.instance for o in fresh}
            now = time.time()
            for o in fresh:
                self._absent_since.pop(o.instance, None)
            # An instance that vanished from Prometheus is down (up=0, no score), not deleted,
            # until it has been gone for ABSENT_STEPS steps (it left the fleet).
            for name in list(self.engine.states):
                if name in got:
                    continue
                since = self._absent_since.setdefault(name, now)
                if now - since <= ABSENT_STEPS * self.step_seconds:
                    obs.append(Observation(name, now, reason=reason, message=message))
            # Once the engine has dropped an instance, forget when it went away.
            for name in self._absent_since.keys() - self.engine.states.keys():
                del self._absent_since[name]
        return obs

    def _owns(self, instance: str) -> bool:
        from .shard import owns

        return owns(instance, self.s.shard)

    def check_step(self) -> None:
        """Refuse a model whose step is shorter than the interval Prometheus scrapes at."""
        if not self.prom:
            return
        try:
            interval = self.prom.scrape_interval()
        except PrometheusSourceError as exc:
            log.warning("cannot read the scrape interval from Prometheus (%s)", exc)
            return
        if interval is None:
            log.warning("Prometheus holds no recent CoreDNS samples for the selector yet")
            return
        if interval > 1.2 * self.step_seconds:
            other = sibling_bundle_for(Path(self.model_dir), interval)
            use = f"use {other} (its step fits)" if other else "use a bundle of that step"
            raise StepMismatch(
                f"Prometheus scrapes these CoreDNS every {interval:.3g} s but the model "
                f"{self.model_dir} has a {self.step_seconds:g} s step, so most one-step rates "
                f"would read 0: {use}, or fit one on your own history: coredns-anomaly fit "
                "--prometheus URL --start ... --end ..."
            )
        log.info("Prometheus scrapes every %g s; model step %g s", interval, self.step_seconds)

    # -- baselines that survive a restart -----------------------------------------
    def load_state(self) -> None:
        path = self.s.state_file
        if not path or not os.path.exists(path):
            return
        try:
            with open(path) as fh:
                state = json.load(fh)
            if state.get("version") != STATE_VERSION or not isinstance(state["baselines"], dict):
                raise ValueError(f"not a version-{STATE_VERSION} state file")
            if state.get("baseline_spec") != self.engine.bundle.baseline.to_dict():
                log.warning("%s: saved with another baseline rule; learning anew", path)
                return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("state file %s unreadable (%s); every instance learns anew", path, exc)
            return
        self.engine.restore_baselines(state["baselines"])
        log.info("state file %s: %d saved baselines", path, len(state["baselines"]))

    def save_state(self) -> None:
        """Atomically write every instance's baseline (tmp file + rename, never half a file)."""
        path = self.s.state_file
        if not path:
            return
        with self.lock:
            baselines = self.engine.baselines_state()
            spec = self.engine.bundle.baseline.to_dict()
        doc = {"version": STATE_VERSION, "saved_at": time.time(), "baseline_spec": spec,
               "baselines": baselines}  # fmt: skip
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".baselines-", dir=folder)
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, separators=(",", ":"), allow_nan=False)
            os.replace(tmp, path)
            self._state_warned = False
        except (OSError, ValueError) as exc:
            if not self._state_warned:  # once per failure streak, not every minute
                log.error("cannot write state file %s: %s (baselines will not survive a restart)", path, exc)  # fmt: skip
                self._state_warned = True
        self._state_saved_at = time.monotonic()

    def warm_up(self) -> None:
        """With a Prometheus source, learn baselines and fill windows from history at start."""
        if not self.prom:
            return
        b = self.engine.bundle
        learn = math.ceil(b.baseline.warmup_seconds / b.step_seconds) + 1
        steps = min(max(b.window, learn), 11_000)  # Prometheus caps a range at 11,000 points
        try:
            history = self.prom.history(steps, b.step_seconds)
        except PrometheusSourceError as exc:
            log.warning("no warm start from Prometheus (%s); windows fill live", exc)
            return
        with self.lock:
            for obs in history:
                self.engine.step([o for o in obs if self._owns(o.instance)])

    # -- the cycle ----------------------------------------------------------------
    def run_step(self, stop: threading.Event | None = None) -> None:
        """One step: scrape (never past the scrape deadline), score, publish for /metrics."""
        t0 = time.perf_counter()
        self.maybe_reload()
        obs = self.observe(stop)
        if obs is None:  # SIGTERM while scraping: leave at once, record nothing
            return
        with self.lock:
            self.engine.step(obs)
            self.steps += 1
            self.last_step_seconds = time.perf_counter() - t0
            self.snapshot = build_snapshot(self.engine)
            self.last_step_end = time.monotonic()
        if self.scraper:
            states = self.engine.states
            for o in obs:
                if o.instance in self._scraped and o.instance in states:
                    up = states[o.instance].up
                    self.backoff.record(o.instance, up, o.reason or "parse", self.step_seconds)
        for hook in self.step_hooks:
            hook()
        if time.monotonic() - self._state_saved_at >= STATE_SAVE_SECONDS:
            self.save_state()
        for o in obs:
            # parse errors are logged by the engine, which sees them
            if o.reason and o.reason not in ("parse", BACKOFF) and o.message:
                self.scrape_log(
                    logging.WARNING, o.instance, "%s: scrape failed (%s): %s",
                    o.instance, o.reason, o.message,
                )  # fmt: skip

    def run_forever(self, stop: threading.Event) -> None:
        self.warm_up()
        step = self.step_seconds
        next_t = time.monotonic()
        while not stop.is_set():
            self.run_step(stop)
            if stop.is_set():
                break
            next_t += self.step_seconds
            now = time.monotonic()
            if now > next_t:  # overran: skip to the next boundary instead of bunching steps
                self.overruns += 1
                missed = int((now - next_t) / step) + 1
                next_t += missed * step
                log.warning(
                    "step took %.2fs > the model's step %.2fs", self.last_step_seconds, step
                )
            stop.wait(max(0.0, next_t - time.monotonic()))

    # -- hot reload ---------------------------------------------------------------
    def maybe_reload(self) -> None:
        stamp = _stamp(self.model_dir)
        forced = self.reload_requested.is_set()  # SIGHUP
        if stamp == self._stamp and not forced:
            return
        self.reload_requested.clear()
        self._stamp = stamp
        try:
            bundle = load_bundle(self.model_dir)
            runtime = bundle.runtime()
        except BundleError as exc:
            self.reloads["failure"] += 1
            self.last_reload_ok = False
            log.error(
                "model reload refused, still serving sha256 %s: %s",
                self.engine.bundle.sha256[:12],
                exc,
            )
            return
        # sha256 covers model.tflite only: a new threshold or scaler is a new bundle too
        old = self.engine.bundle
        if bundle.sha256 == old.sha256 and bundle.meta == old.meta and self.last_reload_ok:
            if forced:  # asked for and done, nothing new to swap in
                self.reloads["success"] += 1
            return  # touched, not changed
        with self.lock:
            self.engine.swap(bundle, runtime)
        self.reloads["success"] += 1
        self.last_reload_ok = True
        log.info("model reloaded: %s %s sha256 %s", bundle.kind, bundle.version, bundle.sha256[:12])

    def close(self) -> None:
        self.save_state()
        if self.scraper:
            self.scraper.close()


def sibling_bundle_for(model_dir: Path, interval: float) -> Path | None:
    """The bundle beside `model_dir` (models/step15, models/step30, ...) with the shortest step
    that is not shorter than Prometheus' scrape interval, to name in the refusal."""
    from coredns_anomaly.contracts.bundle import BundleMeta

    best: tuple[float, Path] | None = None
    for meta_path in sorted(model_dir.resolve().parent.glob("*/model.json")):
        try:
            step = BundleMeta.read(meta_path).step_seconds
        except Exception:  # noqa: BLE001 (any unreadable bundle is simply not suggested)
            continue
        if step * 1.2 >= interval and (best is None or step < best[0]):
            best = (step, meta_path.parent)
    return None if best is None else best[1]
