"""The traffic model: search-path expansion, popularity, mix and steerable rate."""

from __future__ import annotations

import collections

import dns.message
import pytest

from coredns_anomaly.lab import catalog, traffic


def test_short_names_walk_the_search_path_first():
    # ndots:5: fewer than 5 dots, so every search suffix is tried before the name itself.
    assert traffic.expand("api.github.com", "web") == [
        "api.github.com.web.svc.cluster.local.",
        "api.github.com.svc.cluster.local.",
        "api.github.com.cluster.local.",
        "api.github.com.",
    ]


def test_absolute_and_many_dotted_names():
    assert traffic.expand("api.github.com.", "web") == ["api.github.com."]
    many = "a.b.c.d.e.f"
    assert traffic.expand(many, "web")[0] == many + "."


def test_same_namespace_service_resolves_on_first_candidate():
    lk = traffic.Lookup("redis", "data")
    assert lk.candidates()[0] == "redis.data.svc.cluster.local."


def test_zipf_prefers_popular_names():
    import random

    z = traffic.Zipf(50)
    rng = random.Random(0)
    counts = collections.Counter(z.draw(rng) for _ in range(20000))
    assert counts[0] > counts[1] > counts[10] > counts[40]


def test_lookup_mix_follows_declared_shares_and_is_seeded():
    cat = catalog.build_catalog(seed=7)
    a = [traffic.LookupModel(cat, seed=3).draw() for _ in range(3)]
    b = [traffic.LookupModel(cat, seed=3).draw() for _ in range(3)]
    assert a == b
    model = traffic.LookupModel(cat, seed=1)
    draws = [model.draw() for _ in range(20000)]
    ext = set(cat.external_names)
    external = sum(1 for d in draws if d.name in ext) / len(draws)
    assert external == pytest.approx(traffic.LOOKUP_MIX["external"], abs=0.02)
    aaaa = sum(1 for d in draws if "AAAA" in d.qtypes) / len(draws)
    assert aaaa > 0.85  # getaddrinfo asks A and AAAA together


def test_most_candidate_queries_of_a_healthy_cluster_are_nxdomain():
    # Expected answers from the catalog: every candidate before the one that exists is NXDOMAIN.
    cat = catalog.build_catalog(seed=7)
    existing = {s.fqdn + "." for s in cat.services} | {n + "." for n in cat.external_names}
    model = traffic.LookupModel(cat, seed=2)
    nx = total = 0
    for _ in range(5000):
        lk = model.draw()
        if lk.qtypes != ("A", "AAAA"):
            continue
        for cand in lk.candidates():
            total += 1
            if cand in existing:
                break
            nx += 1
    assert 0.4 < nx / total < 0.8


def test_rate_curve_is_steerable_and_noisy_around_base():
    curve = traffic.RateCurve(base=100, seed=1)
    rates = [curve.rate(t) for t in range(0, 600, 2)]
    assert 50 < sum(rates) / len(rates) < 150
    assert len(set(round(r) for r in rates)) > 20
    curve.multiplier = 3.0
    assert sum(curve.rate(t) for t in range(600, 700)) / 100 > 200


def test_query_wire_is_a_valid_dns_query():
    wire = traffic.query_wire("api.github.com.", "AAAA")
    msg = dns.message.from_wire(wire)
    assert str(msg.question[0].name) == "api.github.com."
    assert msg.edns == -1  # no EDNS: large answers come back truncated, as from old clients


def test_zones_contain_what_the_traffic_asks_for():
    cat = catalog.build_catalog(seed=7)
    cz = catalog.cluster_zone(cat)
    svc = cat.services[0]
    assert f"{svc.name}.{svc.namespace}.svc IN A {svc.ip}" in cz
    big = catalog.external_zone(cat, "io")
    assert big.count("pool0.bigrr IN A") == catalog.LARGE_RECORDS
