"""The feature list: the one source of truth for training and exporter alike.

Two declarative tables. AGGREGATES reduce a raw /metrics page to a few sums (counters,
gauges, histograms summed over labels), naming every metric family they may read, current
(1.11+ `coredns_proxy_*`) and older (`coredns_forward_*`, before 1.7 `*_count_total`) alike. FEATURES turn the
aggregates of two steps into model inputs: rates from counter deltas over one step (resets
handled), shares, histogram quantiles, means, logs. A series a page lacks makes the feature
masked (NaN), never an error; counters that CoreDNS creates lazily (evictions, panics, ...)
count as 0 while their plugin is present.

Shares, quantiles and means are estimates from the events of the step, and on a quiet CoreDNS
a 2 s step holds a handful of them: a p99 of five upstream queries is their maximum, and one
slow answer moves it tenfold. So these features read back as many steps as it takes to hold
`Evidence.min_events` events of their denominator (at most `max_lookback_seconds`): one step on
a busy server, several on a quiet one. Rates stay one step (their noise is what their baseline
spread learns).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .page import Labels, Page

OK_RCODES = ("NOERROR", "NXDOMAIN")


@dataclass(frozen=True)
class Aggregate:
    """A sum over matching samples of the first family name a page has."""

    key: str
    kind: str  # counter | gauge | histogram (buckets by le)
    names: tuple[str, ...]  # candidates, newest naming first
    where: Callable[[Labels], bool] | None = None
    where_text: str = ""
    plugin: str | None = None  # lazily created: 0 (not missing) while this plugin is enabled
    # A family whose series lack this label cannot be split by it: the aggregate is missing
    # (CoreDNS <= 1.4's `proxy` plugin shares a name with 1.11+'s but has no `rcode`).
    needs_label: str | None = None


def _eq(label: str, *values: str) -> Callable[[Labels], bool]:
    return lambda lb: lb.get(label) in values


def _not_ok_rcode(lb: Labels) -> bool:
    return lb.get("rcode", lb.get("rc", "")) not in OK_RCODES


_FWD = lambda lb: lb.get("proxy_name", "forward") == "forward"  # noqa: E731
_FWD_ERR = lambda lb: _FWD(lb) and _not_ok_rcode(lb)  # noqa: E731

AGGREGATES: tuple[Aggregate, ...] = (
    Aggregate("req", "counter", ("coredns_dns_requests_total", "coredns_dns_request_count_total")),
    Aggregate("req_tcp", "counter", ("coredns_dns_requests_total", "coredns_dns_request_count_total"), _eq("proto", "tcp"), 'proto="tcp"'),
    Aggregate("req_aaaa", "counter", ("coredns_dns_requests_total", "coredns_dns_request_type_count_total"), _eq("type", "AAAA"), 'type="AAAA"'),
    Aggregate("req_other", "counter", ("coredns_dns_requests_total", "coredns_dns_request_type_count_total"), lambda lb: lb.get("type") not in ("A", "AAAA"), 'type!~"A|AAAA"'),
    Aggregate("resp", "counter", ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total")),
    Aggregate("resp_noerror", "counter", ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total"), _eq("rcode", "NOERROR"), 'rcode="NOERROR"'),
    Aggregate("resp_nxdomain", "counter", ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total"), _eq("rcode", "NXDOMAIN"), 'rcode="NXDOMAIN"'),
    Aggregate("resp_servfail", "counter", ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total"), _eq("rcode", "SERVFAIL"), 'rcode="SERVFAIL"'),
    Aggregate("resp_refused", "counter", ("coredns_dns_responses_total", "coredns_dns_response_rcode_count_total"), _eq("rcode", "REFUSED"), 'rcode="REFUSED"'),
    Aggregate("dur", "histogram", ("coredns_dns_request_duration_seconds_bucket",)),
    Aggregate("dur_sum", "counter", ("coredns_dns_request_duration_seconds_sum",)),
    Aggregate("dur_count", "counter", ("coredns_dns_request_duration_seconds_count",)),
    Aggregate("reqsize_sum", "counter", ("coredns_dns_request_size_bytes_sum",)),
    Aggregate("reqsize_count", "counter", ("coredns_dns_request_size_bytes_count",)),
    Aggregate("respsize_sum", "counter", ("coredns_dns_response_size_bytes_sum",)),
    Aggregate("respsize_count", "counter", ("coredns_dns_response_size_bytes_count",)),
    Aggregate("cache_hits", "counter", ("coredns_cache_hits_total",), plugin="cache"),
    Aggregate("cache_misses", "counter", ("coredns_cache_misses_total",), plugin="cache"),
    Aggregate("cache_entries", "gauge", ("coredns_cache_entries", "coredns_cache_size"), plugin="cache"),
    Aggregate("cache_evictions", "counter", ("coredns_cache_evictions_total",), plugin="cache"),
    Aggregate("cache_stale", "counter", ("coredns_cache_served_stale_total",), plugin="cache"),
    Aggregate("up_req", "counter", ("coredns_proxy_request_duration_seconds_count", "coredns_forward_requests_total", "coredns_forward_request_count_total"), _FWD, 'proxy_name="forward"', plugin="forward"),
    Aggregate("up_err", "counter", ("coredns_proxy_request_duration_seconds_count", "coredns_forward_responses_total", "coredns_forward_response_rcode_count_total"), _FWD_ERR, 'rcode!~"NOERROR|NXDOMAIN"', plugin="forward", needs_label="rcode"),
    Aggregate("up_dur", "histogram", ("coredns_proxy_request_duration_seconds_bucket", "coredns_forward_request_duration_seconds_bucket"), _FWD, 'proxy_name="forward"', plugin="forward"),
    Aggregate("up_hc_fail", "counter", ("coredns_proxy_healthcheck_failures_total", "coredns_forward_healthcheck_failures_total", "coredns_forward_healthcheck_failure_count_total"), _FWD, plugin="forward"),
    Aggregate("up_rejects", "counter", ("coredns_forward_max_concurrent_rejects_total", "coredns_forward_max_concurrent_reject_count_total"), plugin="forward"),
    Aggregate("panics", "counter", ("coredns_panics_total", "coredns_panic_count_total")),
    Aggregate("cpu", "counter", ("process_cpu_seconds_total",)),
    Aggregate("rss", "gauge", ("process_resident_memory_bytes",)),
    Aggregate("goroutines", "gauge", ("go_goroutines",)),
    Aggregate("fds", "gauge", ("process_open_fds",)),
    Aggregate("start_time", "gauge", ("process_start_time_seconds",)),
)  # fmt: skip

Values = dict[str, "float | dict[float, float] | None"]

# Every sample name the features read: the exporter parses only these lines of a page.
NEEDED_NAMES: frozenset[str] = frozenset(
    {n for a in AGGREGATES for n in a.names} | {"coredns_plugin_enabled"}
)


def aggregate(page: Page) -> Values:
    """Reduce a page to AGGREGATES' sums; None where the page cannot give the sum this step.

    None (the features that read it are masked) when the page lacks the family (unless its
    plugin is enabled and creates it lazily: then 0), when a series of the sum is NaN or +-Inf
    (its true value is unknown: summing the rest would read as a counter reset, and the next
    step as a burst), or when the family lacks the label the aggregate splits by.
    """
    out: Values = {}
    for ag in AGGREGATES:
        name = next((n for n in ag.names if page.present(n)), None)
        if name is None:
            lazy = ag.plugin is not None and page.plugin_enabled(ag.plugin)
            out[ag.key] = (0.0 if ag.kind != "histogram" else {}) if lazy else None
            continue
        rows = page.get(name)
        bad = page.nonfinite.get(name, ())
        if ag.where is not None:
            bad = [lb for lb in bad if ag.where(lb)]
        if bad or (ag.needs_label and any(ag.needs_label not in lb for lb, _ in rows)):
            out[ag.key] = None
            continue
        if ag.where is not None:
            rows = [(lb, v) for lb, v in rows if ag.where(lb)]
        if ag.kind == "histogram":
            buckets: dict[float, float] = {}
            for lb, v in rows:
                try:
                    le = float(lb["le"])
                except (KeyError, ValueError):
                    continue
                buckets[le] = buckets.get(le, 0.0) + v
            finite = all(math.isfinite(v) for v in buckets.values())
            out[ag.key] = buckets if finite else None
        else:
            total = float(sum(v for _, v in rows))
            out[ag.key] = total if math.isfinite(total) else None  # finite samples can overflow
    return out


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """PromQL's histogram_quantile on cumulative buckets (le -> count); NaN if empty."""
    if not buckets:
        return math.nan
    les = sorted(buckets)
    counts = [max(0.0, buckets[le]) for le in les]
    for i in range(1, len(counts)):  # cumulative counts must not decrease
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total <= 0 or not math.isinf(les[-1]):
        return math.nan
    rank = q * total
    i = next(k for k, c in enumerate(counts) if c >= rank)
    if math.isinf(les[i]):
        return les[-2] if len(les) > 1 else math.nan
    lo, lo_count = (0.0, 0.0) if i == 0 else (les[i - 1], counts[i - 1])
    width = counts[i] - lo_count
    return lo + (les[i] - lo) * ((rank - lo_count) / width if width > 0 else 1.0)


class Step:
    """Aggregates of this step and the previous one, with the arithmetic features use."""

    def __init__(self, cur: Values, prev: Values | None, dt: float, restarted: bool) -> None:
        self.cur, self.prev, self.dt, self.restarted = cur, prev, dt, restarted

    def delta(self, key: str) -> float:
        c = self.cur.get(key)
        p = None if self.prev is None else self.prev.get(key)
        if c is None or p is None or self.dt <= 0:
            return math.nan
        # A counter that went down was reset (restart): its whole value is new since.
        return c if (self.restarted or c < p) else c - p

    def rate(self, key: str) -> float:
        return self.delta(key) / self.dt if self.dt > 0 else math.nan

    def gauge(self, key: str) -> float:
        v = self.cur.get(key)
        return math.nan if v is None else float(v)

    def share(self, part: str, whole: str) -> float:
        w = self.delta(whole)
        return self.delta(part) / w if w > 0 else (0.0 if w == 0 else math.nan)

    def hist_delta(self, key: str) -> dict[float, float] | None:
        c, p = self.cur.get(key), None if self.prev is None else self.prev.get(key)
        if c is None or p is None:
            return None
        if self.restarted or any(c.get(le, 0.0) < v for le, v in p.items()):
            return dict(c)
        return {le: v - p.get(le, 0.0) for le, v in c.items()}

    def quantile(self, key: str, q: float) -> float:
        h = self.hist_delta(key)
        return math.nan if h is None else histogram_quantile(q, h)


def _log10s(x: float, floor: float = 1e-5) -> float:
    return math.log10(max(x, floor)) if math.isfinite(x) else math.nan


def _log1p(x: float) -> float:
    return math.log1p(max(x, 0.0)) if math.isfinite(x) else math.nan


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str
    transform: str
    sources: tuple[str, ...]  # aggregate keys
    fn: Callable[[Step], float]
    description: str
    evidence: tuple[str, ...] = ()  # counters whose events the estimate is made of (see Evidence)


@dataclass(frozen=True)
class Evidence:
    """How many events an estimated feature (share, quantile, mean) needs before it is read."""

    min_events: float = 100.0
    max_lookback_seconds: float = 60.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> Evidence:
        if not isinstance(d, dict):
            raise ValueError("input.evidence must be an object")
        try:
            ev = cls(float(d["min_events"]), float(d["max_lookback_seconds"]))
        except KeyError as exc:
            raise ValueError(f"input.evidence lacks {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ValueError(f"input.evidence has a field of the wrong type: {exc}") from exc
        if not (math.isfinite(ev.min_events) and ev.min_events >= 0):
            raise ValueError("input.evidence.min_events must be finite and >= 0")
        if not (math.isfinite(ev.max_lookback_seconds) and ev.max_lookback_seconds >= 0):
            raise ValueError("input.evidence.max_lookback_seconds must be finite and >= 0")
        return ev


EVIDENCE = Evidence()  # what training uses; a bundle carries the one it was trained with
ONE_STEP = Evidence(0.0, 0.0)  # every feature over one step (the exporter before Evidence)


FEATURES: tuple[Feature, ...] = (
    Feature("dns_requests_rate", "ln(1+req/s)", "log1p(rate)", ("req",), lambda s: _log1p(s.rate("req")), "queries per second"),
    Feature("dns_tcp_share", "ratio", "share of rates", ("req_tcp", "req"), lambda s: s.share("req_tcp", "req"), "share of queries over TCP", ("req",)),
    Feature("dns_type_aaaa_share", "ratio", "share of rates", ("req_aaaa", "req"), lambda s: s.share("req_aaaa", "req"), "share of AAAA queries", ("req",)),
    Feature("dns_type_other_share", "ratio", "share of rates", ("req_other", "req"), lambda s: s.share("req_other", "req"), "share of queries neither A nor AAAA", ("req",)),
    Feature("dns_rcode_noerror_share", "ratio", "share of rates", ("resp_noerror", "resp"), lambda s: s.share("resp_noerror", "resp"), "share of NOERROR responses", ("resp",)),
    Feature("dns_rcode_nxdomain_share", "ratio", "share of rates", ("resp_nxdomain", "resp"), lambda s: s.share("resp_nxdomain", "resp"), "share of NXDOMAIN responses", ("resp",)),
    Feature("dns_rcode_servfail_share", "ratio", "share of rates", ("resp_servfail", "resp"), lambda s: s.share("resp_servfail", "resp"), "share of SERVFAIL responses", ("resp",)),
    Feature("dns_rcode_refused_share", "ratio", "share of rates", ("resp_refused", "resp"), lambda s: s.share("resp_refused", "resp"), "share of REFUSED responses", ("resp",)),
    Feature("dns_latency_p50", "log10(s)", "histogram_quantile(0.5) of counter deltas", ("dur",), lambda s: _log10s(s.quantile("dur", 0.5)), "median request duration", ("dur_count",)),
    Feature("dns_latency_p90", "log10(s)", "histogram_quantile(0.9) of counter deltas", ("dur",), lambda s: _log10s(s.quantile("dur", 0.9)), "90th percentile request duration", ("dur_count",)),
    Feature("dns_latency_p99", "log10(s)", "histogram_quantile(0.99) of counter deltas", ("dur",), lambda s: _log10s(s.quantile("dur", 0.99)), "99th percentile request duration", ("dur_count",)),
    Feature("dns_latency_mean", "log10(s)", "delta(sum)/delta(count)", ("dur_sum", "dur_count"), lambda s: _log10s(s.delta("dur_sum") / s.delta("dur_count")) if s.delta("dur_count") > 0 else math.nan, "mean request duration", ("dur_count",)),
    Feature("dns_request_size_mean", "ln(1+bytes)", "log1p(delta(sum)/delta(count))", ("reqsize_sum", "reqsize_count"), lambda s: _log1p(s.delta("reqsize_sum") / s.delta("reqsize_count")) if s.delta("reqsize_count") > 0 else math.nan, "mean request size", ("reqsize_count",)),
    Feature("dns_response_size_mean", "ln(1+bytes)", "log1p(delta(sum)/delta(count))", ("respsize_sum", "respsize_count"), lambda s: _log1p(s.delta("respsize_sum") / s.delta("respsize_count")) if s.delta("respsize_count") > 0 else math.nan, "mean response size", ("respsize_count",)),
    Feature("cache_hit_ratio", "ratio", "hits/(hits+misses) of rates", ("cache_hits", "cache_misses"), lambda s: (s.delta("cache_hits") / (s.delta("cache_hits") + s.delta("cache_misses"))) if (s.delta("cache_hits") + s.delta("cache_misses")) > 0 else math.nan, "cache hit ratio", ("cache_hits", "cache_misses")),
    Feature("cache_entries", "ln(1+entries)", "log1p(gauge)", ("cache_entries",), lambda s: _log1p(s.gauge("cache_entries")), "entries in the cache"),
    Feature("cache_evictions_rate", "ln(1+ev/s)", "log1p(rate)", ("cache_evictions",), lambda s: _log1p(s.rate("cache_evictions")), "cache evictions per second"),
    Feature("cache_served_stale_rate", "ln(1+1/s)", "log1p(rate)", ("cache_stale",), lambda s: _log1p(s.rate("cache_stale")), "stale answers served per second"),
    Feature("upstream_requests_rate", "ln(1+req/s)", "log1p(rate)", ("up_req",), lambda s: _log1p(s.rate("up_req")), "queries forwarded upstream per second"),
    Feature("upstream_share", "ratio", "upstream rate / request rate", ("up_req", "req"), lambda s: s.share("up_req", "req"), "share of queries that went upstream", ("req",)),
    Feature("upstream_error_share", "ratio", "share of rates", ("up_err", "up_req"), lambda s: s.share("up_err", "up_req"), "share of upstream answers not NOERROR/NXDOMAIN", ("up_req",)),
    Feature("upstream_latency_p50", "log10(s)", "histogram_quantile(0.5) of counter deltas", ("up_dur",), lambda s: _log10s(s.quantile("up_dur", 0.5)), "median upstream round trip", ("up_req",)),
    Feature("upstream_latency_p99", "log10(s)", "histogram_quantile(0.99) of counter deltas", ("up_dur",), lambda s: _log10s(s.quantile("up_dur", 0.99)), "99th percentile upstream round trip", ("up_req",)),
    Feature("upstream_healthcheck_failures_rate", "ln(1+1/s)", "log1p(rate)", ("up_hc_fail",), lambda s: _log1p(s.rate("up_hc_fail")), "upstream health-check failures per second"),
    Feature("upstream_max_concurrent_rejects_rate", "ln(1+1/s)", "log1p(rate)", ("up_rejects",), lambda s: _log1p(s.rate("up_rejects")), "queries refused by forward's max_concurrent per second"),
    Feature("panics_rate", "ln(1+1/s)", "log1p(rate)", ("panics",), lambda s: _log1p(s.rate("panics")), "panics recovered per second"),
    Feature("process_cpu_cores", "cores", "rate", ("cpu",), lambda s: s.rate("cpu"), "CPU used, in cores"),
    Feature("process_memory", "ln(1+MiB)", "log1p(gauge/2^20)", ("rss",), lambda s: _log1p(s.gauge("rss") / 2**20), "resident memory"),
    Feature("go_goroutines", "ln(1+n)", "log1p(gauge)", ("goroutines",), lambda s: _log1p(s.gauge("goroutines")), "goroutines"),
    Feature("process_open_fds", "ln(1+n)", "log1p(gauge)", ("fds",), lambda s: _log1p(s.gauge("fds")), "open file descriptors"),
)  # fmt: skip

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


class FeatureState:
    """Per-instance memory of the last steps' aggregates, so each update yields one feature row."""

    def __init__(self, evidence: Evidence = EVIDENCE) -> None:
        self.evidence = evidence
        self.history: deque[tuple[float, Values]] = deque()  # (ts, aggregates), oldest first
        self.restarted = False  # the latest page is the first of a new process

    @property
    def prev(self) -> Values | None:
        """The newest page's aggregates (None before the first)."""
        return self.history[-1][1] if self.history else None

    def reset(self) -> None:
        self.history.clear()

    def update(self, page: Page, ts: float) -> np.ndarray:
        """Feature row (float64, NaN = masked) for the step ending at ts."""
        cur = aggregate(page)
        if self.history and ts <= self.history[-1][0]:
            self.history.clear()  # time went backwards: nothing before can be trusted
        hist = list(self.history)
        self.restarted = bool(hist) and _restarted(cur, hist[-1][1])
        self.history.append((ts, cur))
        while self.history and ts - self.history[0][0] > self.evidence.max_lookback_seconds:
            if len(self.history) <= 2:
                break  # the previous step is always kept
            self.history.popleft()
        if not hist:
            return np.full(len(FEATURES), np.nan)
        row = np.empty(len(FEATURES))
        steps: dict[int, Step] = {}
        lookbacks: dict[tuple[str, ...], int] = {}
        for i, f in enumerate(FEATURES):
            if f.evidence not in lookbacks:
                lookbacks[f.evidence] = self._lookback(f.evidence, cur, hist)
            k = lookbacks[f.evidence]
            if k not in steps:
                prev_ts, prev = hist[-k]
                steps[k] = Step(cur, prev, ts - prev_ts, _restarted(cur, prev))
            try:
                v = float(f.fn(steps[k]))
            except (ZeroDivisionError, ValueError, TypeError, OverflowError):
                v = math.nan
            row[i] = v if math.isfinite(v) else math.nan
        return row

    def _lookback(
        self, evidence: tuple[str, ...], cur: Values, hist: list[tuple[float, Values]]
    ) -> int:
        """How many steps back a feature made of `evidence` events reads: the fewest that hold
        min_events of them, never across a restart or a counter reset, never past
        max_lookback_seconds (then as far as allowed)."""
        if not evidence or self.evidence.min_events <= 0:
            return 1
        now = _total(cur, evidence)
        k = 1
        for j in range(1, len(hist) + 1):
            prev = hist[-j][1]
            if j > 1 and _restarted(cur, prev):
                break
            before = _total(prev, evidence)
            if j > 1 and (now is None or before is None or before > now):
                break
            k = j
            if now is None or before is None or now - before >= self.evidence.min_events:
                break
        return k


def _total(values: Values, keys: tuple[str, ...]) -> float | None:
    parts = [values.get(k) for k in keys]
    if any(not isinstance(p, float) for p in parts):
        return None
    return float(sum(parts))  # type: ignore[arg-type]


def _restarted(cur: Values, prev: Values) -> bool:
    now, before = cur.get("start_time"), prev.get("start_time")
    return now is not None and before is not None and now != before


def feature_table_markdown() -> str:
    """The docs' feature table, generated from FEATURES, AGGREGATES and EVIDENCE."""
    by_key = {a.key: a for a in AGGREGATES}
    lines = [
        "| # | feature | unit | transform | read over | source metrics |",
        "|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(FEATURES):
        srcs = []
        for k in f.sources:
            a = by_key[k]
            sel = f"{{{a.where_text}}}" if a.where_text else ""
            srcs.append(" or ".join(f"`{n}{sel}`" for n in a.names))
        over = (
            f"the last steps holding >= {EVIDENCE.min_events:g} events of {' + '.join(f.evidence)}"
            if f.evidence
            else "one step"
        )
        lines.append(
            f"| {i} | `{f.name}` ({f.description}) | {f.unit} | {f.transform} | {over} | {'; '.join(srcs)} |"
        )
    lines += [
        "",
        f"Estimated features (shares, quantiles, means) read back over as many steps as hold "
        f"{EVIDENCE.min_events:g} events of their denominator, at most "
        f"{EVIDENCE.max_lookback_seconds:g} s and never across a restart: one step on a busy "
        "CoreDNS, several on a quiet one, where one step's p99 would be the maximum of a few "
        "queries. Rates are always one step. A bundle records the rule it was trained with "
        "(`input.evidence`).",
    ]
    return "\n".join(lines) + "\n"
