"""The classic rules' signals: PromQL on CoreDNS's own metrics, one value per instance.

Shared by the two roles that hand thresholds.json to each other (contracts/thresholds.py):
training learns each signal's threshold from a dataset's normal traffic by querying this exact
PromQL (training/baselines/thresholds.py), the rules generator writes it as a plain alert
(rules/classic.py). Each signal is "higher is worse". Aggregations are
`sum without (<CoreDNS's own labels>)`, as in the coredns-mixin, so target labels (instance,
pod, cluster, ...) survive for routing while per-server/zone/upstream splits are summed away.
Forward metrics moved in CoreDNS 1.11 (`coredns_forward_*` -> `coredns_proxy_*{proxy_name=
"forward"}`); `legacy` picks the pre-1.11 names for fleets that still run them. Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass

DNS_LABELS = "server, zone, view"
REQ = f"{DNS_LABELS}, proto, family, type"
RESP = f"{DNS_LABELS}, plugin, rcode"
CACHE = "server, zone, zones, view"


@dataclass(frozen=True)
class Signal:
    """One classic signal: how to compute it and what it is meant to catch."""

    name: str  # snake_case key in thresholds.json
    alert: str  # alert name (CoreDNSAnomaly prefix: the webhook never learns from our own rules)
    title: str  # what the value is, for summaries
    unit: str  # "share" (0..1), "seconds" or "per_second": how annotations format it
    feature: str  # the closest exporter feature (docs/features.md), for top_features
    catches: tuple[str, ...]  # the lab's fault classes it is meant for (anomaly_type)
    current: str  # PromQL template: {sel} job selector body, {w} rate window
    legacy: str | None = None  # pre-1.11 variant, when the metric names differ
    # No series = 0, not unknown: CoreDNS creates e.g. the SERVFAIL counter on first use.
    absent_is_zero: bool = False

    def expr(self, job: str, window: str, legacy: bool = False) -> str:
        text = self.legacy if legacy and self.legacy else self.current
        return text.format(sel=f'job="{job}"', w=window)

    @property
    def ceiling(self) -> float:
        """Largest value the signal can take: a threshold at or above it can never fire."""
        return 1.0 if self.unit == "share" else float("inf")


def _share(metric: str, without: str, part: str) -> str:
    return (
        f"sum without ({without}) (rate({metric}{{{{{{sel}},{part}}}}}[{{w}}]))\n"
        f"  /\nsum without ({without}) (rate({metric}{{{{{{sel}}}}}}[{{w}}]))"
    )


def _p99(metric: str, without: str, extra: str = "") -> str:
    sel = "{{{sel}" + (f",{extra}" if extra else "") + "}}"
    return f"histogram_quantile(0.99, sum without ({without}) (rate({metric}{sel}[{{w}}])))"


SIGNALS: tuple[Signal, ...] = (
    Signal(
        "servfail_share", "CoreDNSAnomalyClassicServfailHigh", "SERVFAIL share of responses",
        "share", "dns_rcode_servfail_share", ("upstream_servfail", "upstream_loss"),
        _share("coredns_dns_responses_total", RESP, 'rcode="SERVFAIL"'), absent_is_zero=True,
    ),
    Signal(
        "refused_share", "CoreDNSAnomalyClassicRefusedHigh", "REFUSED share of responses",
        "share", "dns_rcode_refused_share", ("misconfig_refused",),
        _share("coredns_dns_responses_total", RESP, 'rcode="REFUSED"'), absent_is_zero=True,
    ),
    Signal(
        "nxdomain_share", "CoreDNSAnomalyClassicNxdomainHigh", "NXDOMAIN share of responses",
        "share", "dns_rcode_nxdomain_share", ("random_subdomain",),
        _share("coredns_dns_responses_total", RESP, 'rcode="NXDOMAIN"'), absent_is_zero=True,
    ),
    Signal(
        "tcp_share", "CoreDNSAnomalyClassicTcpShareHigh", "share of queries over TCP",
        "share", "dns_tcp_share", ("tcp_fallback",),
        _share("coredns_dns_requests_total", REQ, 'proto="tcp"'), absent_is_zero=True,
    ),
    Signal(
        "cache_miss_share", "CoreDNSAnomalyClassicCacheMissHigh", "cache miss share",
        "share", "cache_hit_ratio", ("cache_thrash", "random_subdomain"),
        f"sum without ({CACHE}) (rate(coredns_cache_misses_total{{{{{{sel}}}}}}[{{w}}]))\n  /\n"
        f"(\n  sum without ({CACHE}) (rate(coredns_cache_misses_total{{{{{{sel}}}}}}[{{w}}]))\n"
        f"  +\n  sum without ({CACHE}, type) (rate(coredns_cache_hits_total{{{{{{sel}}}}}}[{{w}}]))\n)",
    ),
    Signal(
        "latency_p99", "CoreDNSAnomalyClassicLatencyHigh", "99th percentile request latency",
        "seconds", "dns_latency_p99", ("cpu_starvation", "upstream_latency", "upstream_loss"),
        _p99("coredns_dns_request_duration_seconds_bucket", f"{DNS_LABELS}, type"),
    ),
    Signal(
        "upstream_latency_p99", "CoreDNSAnomalyClassicUpstreamLatencyHigh",
        "99th percentile upstream round trip", "seconds", "upstream_latency_p99",
        ("upstream_latency",),
        _p99("coredns_proxy_request_duration_seconds_bucket", "to, rcode", 'proxy_name="forward"'),
        _p99("coredns_forward_request_duration_seconds_bucket", "to, rcode"),
    ),
    Signal(
        "upstream_error_share", "CoreDNSAnomalyClassicUpstreamErrorsHigh",
        "share of upstream answers that are neither NOERROR nor NXDOMAIN", "share",
        "upstream_error_share", ("upstream_servfail",),
        "sum without (to, rcode) (rate(coredns_proxy_request_duration_seconds_count"
        '{{{sel},proxy_name="forward",rcode!~"NOERROR|NXDOMAIN"}}[{w}]))\n  /\n'
        "sum without (to, rcode) (rate(coredns_proxy_request_duration_seconds_count"
        '{{{sel},proxy_name="forward"}}[{w}]))',
        "sum without (to, rcode) (rate(coredns_forward_responses_total"
        '{{{sel},rcode!~"NOERROR|NXDOMAIN"}}[{w}]))\n  /\n'
        "sum without (to, rcode) (rate(coredns_forward_requests_total{{{sel}}}[{w}]))",
        absent_is_zero=True,
    ),
    Signal(
        "upstream_healthcheck_failures", "CoreDNSAnomalyClassicUpstreamHealthcheckFailing",
        "upstream health-check failures per second", "per_second",
        "upstream_healthcheck_failures_rate", ("upstream_loss",),
        "sum without (to) (rate(coredns_proxy_healthcheck_failures_total"
        '{{{sel},proxy_name="forward"}}[{w}]))',
        "sum without (to) (rate(coredns_forward_healthcheck_failures_total{{{sel}}}[{w}]))",
        absent_is_zero=True,
    ),
)  # fmt: skip

BY_NAME = {s.name: s for s in SIGNALS}
