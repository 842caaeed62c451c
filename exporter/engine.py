"""One step for a fleet: pages -> feature rows -> ring buffers -> one batched invoke -> decisions.

Per target a ring buffer holds the last W feature rows (the proposal's FIFO stack) and an
InstanceBaseline learns that target's own normal (exporter/baseline.py): the model sees each
window as z-scores against it. A target is scored only when its window is full, its last step
is present and most steps are (the rule training cut its windows with), so a down target never
carries a stale score. While its baseline is still learning, a target's score is exported for
inspection but never becomes an anomaly. For RESTART_GRACE_SECONDS after a CoreDNS restarted
(its process start time changed), no new anomaly is raised below RESTART_GRACE_SCORE either:
its cache is empty, its memory and open sockets are fresh, its first rates cover part of a
step, all of which the model rightly sees as unlike that instance's normal, and all of which a
rollout does on purpose. A second restart within CRASHLOOP_SECONDS gets no grace: restarting
is then the anomaly. The model is swapped only between steps, so a hot reload never drops one.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .backoff import REASON as BACKOFF
from .baseline import BaselineSpec, InstanceBaseline
from .bundle import Bundle, window_ok
from .features import FEATURE_NAMES, FEATURES, NEEDED_NAMES, Evidence, FeatureState
from .page import Page, PageError, parse_needed
from .ratelog import RateLimitedLog
from .runtime import Runtime

log = logging.getLogger("coredns_anomaly.exporter")
# A page that does not parse is counted every step (target_errors_total{reason="parse"}) but
# logged at most once a minute per target, so a broken or hostile target cannot flood the log.
PARSE_LOG_SECONDS = 60.0
N_FEATURES = len(FEATURE_NAMES)
# After a restart the cache refills and the effects fade within a minute or two (30 s scrapes of
# the soaks: scores over 1 up to 75 s after a restart, under 1 by 105 s); a score still over 1
# when the grace ends raises the anomaly at once (the streak kept counting).
RESTART_GRACE_SECONDS = 120.0
# ... unless the score reaches this (the critical alert's level for an unbounded score): a cold
# start scored 1.05-1.4 there, a fault that starts just after a restart can be much stronger.
RESTART_GRACE_SCORE = 2.0
CRASHLOOP_SECONDS = 600.0


@dataclass
class Observation:
    """What one source produced for one instance at one step."""

    instance: str
    ts: float
    duration: float = 0.0
    text: str | None = None  # a page to parse (direct scrapes)
    page: Page | None = None  # or an already-built page (Prometheus API)
    reason: str = ""  # why there is neither
    message: str = ""


@dataclass
class Verdict:
    score: float  # normalised: >= 1 anomalous at this step
    anomaly: bool  # after debouncing
    type: str = ""
    top: list[tuple[str, float]] = field(default_factory=list)


class TargetState:
    def __init__(self, window: int, spec: BaselineSpec, evidence: Evidence) -> None:
        self.features = FeatureState(evidence)
        self.baseline = InstanceBaseline(spec, N_FEATURES)
        self.missing_features: tuple[str, ...] = ()  # their source metrics are not on the page
        self.learning_logged = False
        self.rows = np.full((window, N_FEATURES), np.nan)
        self.missing = np.ones(window, bool)
        self.filled = 0  # steps seen since the target appeared, capped at the window
        self.streak = 0  # consecutive anomalous steps, for debouncing
        self.calm = 0  # consecutive steps below 1, for ending an anomaly (bundle.clear_steps)
        self.held_back = False  # over 1, but a judged false alarm again (bundle.suppression)
        self.alarm = False
        self.up = False
        self.ts = -math.inf  # the latest observation's time
        self.restarted_at = -math.inf  # the latest restart seen (process start time changed)
        self.grace_until = -math.inf  # no new anomaly before this (a restart's cold start)
        self.scrape_duration = 0.0
        self.errors: Counter[str] = Counter()
        self.verdict: Verdict | None = None

    def resize(self, window: int) -> None:
        keep = min(window, len(self.rows))
        rows, missing = np.full((window, N_FEATURES), np.nan), np.ones(window, bool)
        rows[window - keep :], missing[window - keep :] = self.rows[-keep:], self.missing[-keep:]
        self.rows, self.missing, self.filled = rows, missing, min(self.filled, window)

    def push(self, row: np.ndarray) -> None:
        self.rows[:-1], self.missing[:-1] = self.rows[1:], self.missing[1:]
        self.rows[-1], self.missing[-1] = row, bool(np.isnan(row).all())
        self.filled = min(self.filled + 1, len(self.rows))

    @property
    def fill_ratio(self) -> float:
        """Present steps in the window / window length: warm-up, and gaps while down."""
        present = int((~self.missing[len(self.rows) - self.filled :]).sum())
        return present / len(self.rows)

    def ready(self) -> bool:
        return self.filled == len(self.rows) and window_ok(self.missing)

    @property
    def learning(self) -> bool:
        return not self.baseline.warm()

    @property
    def in_restart_grace(self) -> bool:
        return self.ts < self.grace_until


@dataclass
class StepStats:
    duration: float = 0.0
    inference: float = 0.0
    scored: int = 0


class Engine:
    def __init__(self, bundle: Bundle, explain_top: int = 3) -> None:
        self.explain_top = explain_top
        self.states: dict[str, TargetState] = {}
        self.bundle: Bundle = bundle
        self.runtime: Runtime = bundle.runtime()
        self.last = StepStats()
        self.saved_baselines: dict[str, dict] = {}  # a previous run's, by instance
        self.steps_done = 0  # /metrics rebuilds its snapshot when this moves (collector.py)
        self.parse_log = RateLimitedLog(log, PARSE_LOG_SECONDS)

    def swap(self, bundle: Bundle, runtime: Runtime | None = None) -> None:
        """Serve another (already validated) bundle from the next step on."""
        self.runtime = runtime or bundle.runtime()
        if bundle.window != self.bundle.window:
            for st in self.states.values():
                st.resize(bundle.window)
        if bundle.baseline != self.bundle.baseline:  # keep what was learned, under the new rule
            for st in self.states.values():
                st.baseline = InstanceBaseline.from_state(
                    bundle.baseline, N_FEATURES, st.baseline.to_state()
                )
        self.bundle = bundle
        for st in self.states.values():
            st.streak = st.calm = 0
            st.alarm = False
            st.features.evidence = bundle.evidence  # read from the next page on

    def step(self, observations: list[Observation]) -> StepStats:
        t0 = time.perf_counter()
        seen: dict[str, float] = {}
        for ob in observations:
            if ob.instance in seen:  # two sources name one instance: the first wins this step
                continue
            seen[ob.instance] = ob.ts
            st = self.states.get(ob.instance)
            if st is None:
                st = self.states[ob.instance] = self._new_state(ob.instance)
            self._observe(st, ob)
        for gone in set(self.states) - set(seen):  # a target left the fleet: its series go too
            del self.states[gone]
        ready = [(name, st) for name, st in self.states.items() if st.ready()]
        for st in self.states.values():
            if not st.ready():
                st.verdict, st.streak, st.calm, st.alarm = None, 0, 0, False
        t1 = time.perf_counter()
        if ready:
            self._score(ready)
        t2 = time.perf_counter()
        for name, ts in seen.items():  # learn the step only after it was judged
            st = self.states[name]
            if st.up:
                self._learn(name, st, ts)
        self.last = StepStats(t2 - t0, t2 - t1, len(ready))
        self.steps_done += 1
        return self.last

    def _new_state(self, instance: str) -> TargetState:
        st = TargetState(self.bundle.window, self.bundle.baseline, self.bundle.evidence)
        saved = self.saved_baselines.pop(instance, None)
        if saved is not None:
            try:
                st.baseline = InstanceBaseline.from_state(self.bundle.baseline, N_FEATURES, saved)
                st.learning_logged = st.baseline.warm()
                log.info(
                    "%s: baseline restored (%d rows, %s)", instance, st.baseline.n_rows,
                    "warm" if st.baseline.warm() else "still learning",
                )  # fmt: skip
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("%s: saved baseline unusable (%s); learning anew", instance, exc)
        if not st.learning_logged:
            log.info(
                "%s: learning this instance's normal for %.0f s before it can alarm",
                instance, self.bundle.baseline.warmup_seconds,
            )  # fmt: skip
        return st

    def _learn(self, instance: str, st: TargetState, ts: float) -> None:
        was_learning = st.learning
        # Kept out of the baseline: steps near the threshold too, not only above it, so the
        # first steps of a fault that builds up (before it crosses 1) do not move the location.
        flagged = st.verdict is not None and (
            st.verdict.score >= self.bundle.baseline.learn_below or st.alarm
        )
        relearns = st.baseline.relearns
        st.baseline.observe(st.rows[-1], ts, flagged, alarmed=st.alarm)
        if st.baseline.relearns != relearns:
            log.warning(
                "%s: anomalous for %.0f s: taking it as the new normal, learnt over the next "
                "%.0f s (the old normal judges meanwhile)", instance,
                self.bundle.baseline.relearn_seconds, self.bundle.baseline.warmup_seconds,
            )  # fmt: skip
        if was_learning and not st.learning and not st.learning_logged:
            st.learning_logged = True
            log.info("%s: baseline learned; alarms enabled", instance)

    # -- persistence: baselines survive a restart ----------------------------------
    def baselines_state(self) -> dict[str, dict]:
        return {name: st.baseline.to_state() for name, st in self.states.items()}

    def restore_baselines(self, saved: dict[str, dict]) -> None:
        """Baselines of a previous run, used when each instance first shows up."""
        self.saved_baselines.update(saved)
        for name, st in self.states.items():
            if name in self.saved_baselines:
                fresh = self._new_state(name)
                st.baseline, st.learning_logged = fresh.baseline, fresh.learning_logged

    def _observe(self, st: TargetState, ob: Observation) -> None:
        st.scrape_duration = ob.duration
        st.ts = ob.ts
        page, reason = ob.page, ob.reason
        if page is None and ob.text is not None:
            try:
                page = parse_needed(ob.text, NEEDED_NAMES)
            except PageError as exc:
                reason, ob.message = "parse", str(exc)
                # the parser's message names the line number; the target names the page
                self.parse_log(logging.WARNING, ob.instance, "%s: page does not parse: %s", ob.instance, ob.message)  # fmt: skip
        if page is None:
            st.up = False
            if reason != BACKOFF:  # a step sat out is no scrape, so no error
                st.errors[reason or "unknown"] += 1
            st.push(np.full(N_FEATURES, np.nan))  # a missing step; rates resume over the gap
            return
        st.up = True
        row = st.features.update(page, ob.ts)
        st.push(row)
        if st.features.restarted:
            self._restarted(ob.instance, st, ob.ts)
        missing = tuple(
            f.name for f in FEATURES if any(st.features.prev.get(k) is None for k in f.sources)
        ) if st.features.prev is not None else ()  # fmt: skip
        if missing != st.missing_features:
            if missing:
                log.warning(
                    "%s: %d features have no source metrics on this page and are not scored: %s",
                    ob.instance, len(missing), ", ".join(missing),
                )  # fmt: skip
            st.missing_features = missing

    def _restarted(self, instance: str, st: TargetState, ts: float) -> None:
        if ts - st.restarted_at <= CRASHLOOP_SECONDS:
            st.grace_until = -math.inf
            log.warning(
                "%s: restarted again within %.0f s: judged as usual (restarting is the anomaly)",
                instance, CRASHLOOP_SECONDS,
            )  # fmt: skip
        else:
            st.grace_until = ts + RESTART_GRACE_SECONDS
            log.info(
                "%s: restarted: its cold start (empty cache, fresh process) raises no anomaly "
                "for %.0f s; the score is still exported", instance, RESTART_GRACE_SECONDS,
            )  # fmt: skip
        st.restarted_at = ts

    def _score(self, ready: list[tuple[str, TargetState]]) -> None:
        b = self.bundle
        Z = np.stack([st.baseline.normalize(st.rows) for _, st in ready])
        out = self.runtime.run(Z)
        raw = out["score"].astype(float)
        scores = raw / b.threshold
        # A judged false alarm again: scored, never alarmed. Only a window over 1 can be one.
        hot = scores >= 1.0
        held = np.zeros(len(ready), bool)
        if hot.any():
            held[hot] = b.held_back(Z[hot], raw[hot])
        contrib = out.get("contributions")
        flagged = []
        for i, (_, st) in enumerate(ready):
            s = float(scores[i])
            s = s if math.isfinite(s) else 0.0
            st.held_back = bool(held[i]) and s >= 1.0
            hot = s >= 1.0 and not st.held_back
            st.streak = st.streak + 1 if hot else 0
            st.calm = 0 if hot else st.calm + 1
            # While learning, the score is shown for inspection but never raises an anomaly.
            if st.learning:
                st.alarm = False
            elif not st.alarm:  # a restart's cold start raises none; the streak still counts
                cold = st.in_restart_grace and s < RESTART_GRACE_SCORE
                st.alarm = st.streak >= b.debounce_steps and not cold
            elif st.calm >= b.clear_steps:
                st.alarm = False
            st.verdict = Verdict(s, st.alarm)
            if st.verdict.anomaly:
                flagged.append(i)
        if flagged:  # type and explanation only where they will be shown
            types = b.nearest_types(Z[flagged])
            for k, i in enumerate(flagged):
                v = ready[i][1].verdict
                assert v is not None
                v.type = types[k]
                if contrib is not None and self.explain_top > 0:
                    order = np.argsort(-contrib[i])[: self.explain_top]
                    v.top = [(FEATURE_NAMES[j], float(contrib[i][j])) for j in order]
