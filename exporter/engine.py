"""One step for a fleet: pages -> feature rows -> ring buffers -> one batched invoke -> decisions.

Per target a ring buffer holds the last W feature rows (the proposal's FIFO stack). A target
is scored only when its window is full, its last step is present and most steps are (the
rule training cut its windows with), so a down target never carries a stale score. The model
is swapped only between steps, so a hot reload never drops one.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .bundle import Bundle, standardize, window_ok
from .features import FEATURE_NAMES, NEEDED_NAMES, FeatureState
from .page import Page, PageError, parse_needed
from .runtime import Runtime

N_FEATURES = len(FEATURE_NAMES)


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
    def __init__(self, window: int) -> None:
        self.features = FeatureState()
        self.rows = np.full((window, N_FEATURES), np.nan)
        self.missing = np.ones(window, bool)
        self.filled = 0  # steps seen since the target appeared, capped at the window
        self.streak = 0  # consecutive anomalous steps, for debouncing
        self.up = False
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

    def swap(self, bundle: Bundle, runtime: Runtime | None = None) -> None:
        """Serve another (already validated) bundle from the next step on."""
        self.runtime = runtime or bundle.runtime()
        if bundle.window != self.bundle.window:
            for st in self.states.values():
                st.resize(bundle.window)
        self.bundle = bundle
        for st in self.states.values():
            st.streak = 0

    def step(self, observations: list[Observation]) -> StepStats:
        t0 = time.perf_counter()
        seen = set()
        for ob in observations:
            if ob.instance in seen:  # two sources name one instance: the first wins this step
                continue
            seen.add(ob.instance)
            st = self.states.get(ob.instance)
            if st is None:
                st = self.states[ob.instance] = TargetState(self.bundle.window)
            self._observe(st, ob)
        for gone in set(self.states) - seen:  # a target left the fleet: its series go too
            del self.states[gone]
        ready = [(name, st) for name, st in self.states.items() if st.ready()]
        for st in self.states.values():
            if not st.ready():
                st.verdict, st.streak = None, 0
        t1 = time.perf_counter()
        if ready:
            self._score(ready)
        t2 = time.perf_counter()
        self.last = StepStats(t2 - t0, t2 - t1, len(ready))
        return self.last

    def _observe(self, st: TargetState, ob: Observation) -> None:
        st.scrape_duration = ob.duration
        page, reason = ob.page, ob.reason
        if page is None and ob.text is not None:
            try:
                page = parse_needed(ob.text, NEEDED_NAMES)
            except PageError as exc:
                reason, ob.message = "parse", str(exc)
        if page is None:
            st.up = False
            st.errors[reason or "unknown"] += 1
            st.push(np.full(N_FEATURES, np.nan))  # a missing step; rates resume over the gap
            return
        st.up = True
        st.push(st.features.update(page, ob.ts))

    def _score(self, ready: list[tuple[str, TargetState]]) -> None:
        b = self.bundle
        X = np.stack([st.rows for _, st in ready])
        Z = standardize(X, b.mean, b.scale, b.clip)
        out = self.runtime.run(Z)
        scores = out["score"].astype(float) / b.threshold
        contrib = out.get("contributions")
        flagged = []
        for i, (_, st) in enumerate(ready):
            s = float(scores[i])
            st.streak = st.streak + 1 if s >= 1.0 else 0
            st.verdict = Verdict(s if np.isfinite(s) else 0.0, st.streak >= b.debounce_steps)
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
