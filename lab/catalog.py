"""The lab's little world: a cluster's services and the external names its pods resolve.

One seeded catalog feeds both the zone files the servers answer from and the traffic model
that asks them, so the answers a client expects (NOERROR, NODATA, NXDOMAIN) are known.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

CLUSTER_DOMAIN = "cluster.local"
NAMESPACES = ("default", "kube-system", "payments", "web", "data", "monitoring", "auth", "batch")
EXTERNAL_TLDS = ("com", "io", "net", "org")
# Unique names below these wildcards exist (NOERROR): cache thrash fills the success cache.
THRASH_WILDCARD = "edge.cdnhost.net"
# Names below this domain do not exist: the random-subdomain (water torture) attack.
ATTACK_DOMAIN = "victim-shop.com"
# Names with large answers (40 A records): over UDP without EDNS they come back truncated.
LARGE_DOMAIN = "bigrr.io"
LARGE_RECORDS = 40


@dataclass(frozen=True)
class Service:
    name: str
    namespace: str
    ip: str

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


@dataclass
class Catalog:
    """Services in the cluster zone and external domains in the upstream zones."""

    services: list[Service] = field(default_factory=list)
    external: dict[str, list[str]] = field(default_factory=dict)  # tld -> names (no dot end)
    large_names: list[str] = field(default_factory=list)

    @property
    def external_names(self) -> list[str]:
        return [n for names in self.external.values() for n in names]


_SVC_WORDS = (
    "api gateway redis postgres mysql kafka zookeeper frontend backend auth cart checkout "
    "search catalog inventory orders users billing payments notifications mailer queue "
    "worker scheduler metrics grafana prometheus alertmanager loki tempo jaeger vault "
    "consul etcd minio elastic kibana rabbitmq memcached ingress webhook registry"
).split()
_EXT_WORDS = (
    "github stripe slack twilio sentry datadog pagerduty okta auth0 segment mixpanel "
    "cloudflare fastly akamai googleapis amazonaws azure docker quay gcr npmjs pypi "
    "maven rubygems golang ubuntu debian letsencrypt mozilla jsdelivr unpkg"
).split()
_EXT_HOSTS = ("api", "www", "cdn", "auth", "hooks", "static", "registry", "login")


def build_catalog(seed: int = 7, services_per_namespace: int = 8) -> Catalog:
    """A deterministic cluster: same seed, same names, same addresses."""
    rng = random.Random(seed)
    cat = Catalog()
    n = 0
    for ns in NAMESPACES:
        for word in rng.sample(_SVC_WORDS, services_per_namespace):
            n += 1
            cat.services.append(Service(word, ns, f"10.96.{n // 250}.{n % 250 + 1}"))
    for tld in EXTERNAL_TLDS:
        names = []
        for word in rng.sample(_EXT_WORDS, 8):
            for host in rng.sample(_EXT_HOSTS, 3):
                names.append(f"{host}.{word}.{tld}")
        cat.external[tld] = names
    cat.large_names = [f"pool{i}.{LARGE_DOMAIN}" for i in range(20)]
    return cat


def _soa(origin: str) -> str:
    return (
        f"$ORIGIN {origin}.\n$TTL 30\n"
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 2026112201 7200 3600 1209600 30\n"
        f"@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n"
    )


def cluster_zone(cat: Catalog) -> str:
    """cluster.local as the kubernetes plugin would answer it (A only: an IPv4 cluster)."""
    lines = [_soa(CLUSTER_DOMAIN)]
    for svc in cat.services:
        lines.append(f"{svc.name}.{svc.namespace}.svc IN A {svc.ip}\n")
        lines.append(
            f"_http._tcp.{svc.name}.{svc.namespace}.svc IN SRV 0 100 80 "
            f"{svc.name}.{svc.namespace}.svc.{CLUSTER_DOMAIN}.\n"
        )
    return "".join(lines)


def external_zone(cat: Catalog, tld: str, seed: int = 7) -> str:
    """An upstream authoritative zone; names get A and (for most) AAAA records."""
    rng = random.Random(f"{seed}-{tld}")
    lines = [_soa(tld)]
    for name in cat.external[tld]:
        rel = name[: -len(tld) - 1]
        lines.append(f"{rel} IN A 203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}\n")
        if rng.random() < 0.7:
            lines.append(f"{rel} IN AAAA 2001:db8::{rng.randrange(1, 65535):x}\n")
    if THRASH_WILDCARD.endswith("." + tld):
        rel = THRASH_WILDCARD[: -len(tld) - 1]
        lines.append(f"*.{rel} IN A 198.51.100.7\n")
    if ATTACK_DOMAIN.endswith("." + tld):
        rel = ATTACK_DOMAIN[: -len(tld) - 1]
        lines.append(f"www.{rel} IN A 198.51.100.9\n")
    if LARGE_DOMAIN.endswith("." + tld):
        for name in cat.large_names:
            rel = name[: -len(tld) - 1]
            for i in range(LARGE_RECORDS):
                lines.append(f"{rel} IN A 192.0.2.{i + 1}\n")
    return "".join(lines)
