"""Environment knobs of the lab: Corefile plugin variants, query mix, presets (no CoreDNS)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from coredns_anomaly.lab import catalog, coredns, faults, traffic
from coredns_anomaly.lab.presets import PRESETS, environment_card

PORTS = {"dns": 1053, "metrics": 9153, "health": 8080, "ready": 8181}
ZONES = Path("/lab/zones")


def render(**knobs) -> str:
    return coredns.FrontConfig(**knobs).render(PORTS, ZONES, "127.0.0.1:5300")


def plugin_lines(corefile: str) -> list[str]:
    """First word of each directive at the server block's top level."""
    return [ln.split()[0] for ln in corefile.splitlines() if ln.startswith("    ") and ln[4] != " "]


def test_default_front_is_the_shipped_chain():
    text = render()
    assert plugin_lines(text) == [
        "bind", "errors", "health", "ready", "prometheus", "file", "forward", "}", "cache", "}",
        "loop", "reload", "loadbalance",
    ]  # fmt: skip
    assert "    cache 30 {\n        success 9984\n        denial 9984\n    }\n" in text
    assert "rewrite" not in text and "autopath" not in text


def test_cache_off_drops_the_cache_block_only():
    text = render(cache=False)
    assert "cache" not in text
    assert (
        render().replace("    cache 30 {\n        success 9984\n        denial 9984\n    }\n", "")
        == text
    )


def test_rewrite_and_autopath_render_in_the_server_block():
    text = render(rewrite=True, autopath=True)
    assert "    rewrite name suffix .svc.cluster.local .svc.cluster.local\n" in text
    assert f"    autopath cluster.local {ZONES / 'resolv.conf'}\n" in text
    plugins = coredns.FrontConfig(rewrite=True, autopath=True, cache=False).plugins()
    assert {"rewrite", "autopath"} <= set(plugins) and "cache" not in plugins


def test_autopath_resolv_conf_is_written_with_the_zones(tmp_path):
    coredns.write_zones(tmp_path, catalog.build_catalog(seed=7))
    conf = (tmp_path / "resolv.conf").read_text()
    assert conf.startswith("search default.svc.cluster.local svc.cluster.local cluster.local\n")


@pytest.mark.parametrize("knobs", [{}, {"cache": False}, {"rewrite": True}, {"autopath": True}])
def test_misconfig_and_benign_reload_work_with_every_chain(knobs):
    cfg = coredns.FrontConfig(**knobs)
    cfg.acl_block_types = ("AAAA",)
    blocked = cfg.render(PORTS, ZONES, "127.0.0.1:5300")
    assert "block type AAAA" in blocked
    cfg.acl_block_types, cfg.generation = (), 3
    reloaded = cfg.render(PORTS, ZONES, "127.0.0.1:5300")
    assert "acl" not in reloaded and "expire 13s" in reloaded
    assert ("cache 30" in reloaded) == cfg.cache


def test_default_mix_draws_exactly_the_shipped_traffic():
    cat = catalog.build_catalog(seed=7)
    shipped = traffic.LookupModel(cat, seed=11)
    explicit = traffic.LookupModel(cat, seed=11, mix=traffic.QueryMix())
    reference = traffic.LookupModel(cat, seed=11)
    a = [shipped.draw() for _ in range(3000)]
    assert a == [explicit.draw() for _ in range(3000)]
    assert a == [reference._draw_mix() for _ in range(3000)]
    assert (
        traffic.expand("api.github.com", "web")
        == traffic.Lookup("api.github.com", "web").candidates()
    )


def draws(mix: traffic.QueryMix, n: int = 20000) -> list[traffic.Lookup]:
    model = traffic.LookupModel(catalog.build_catalog(seed=7), seed=4, mix=mix)
    return [model.draw() for _ in range(n)]


def test_ipv4_only_clients_never_ask_aaaa():
    assert not any("AAAA" in d.qtypes for d in draws(traffic.QueryMix(aaaa_share=0.0)))
    half = draws(traffic.QueryMix(aaaa_share=0.5))
    share = sum("AAAA" in d.qtypes for d in half) / len(half)
    assert share == pytest.approx(0.5 * 0.955, abs=0.03)  # of the A+AAAA lookups


def test_other_query_types_share():
    got = draws(traffic.QueryMix(other_share=0.05))
    types = collections.Counter(d.qtypes for d in got)
    assert types[("TXT",)] / len(got) == pytest.approx(0.05 / 3, abs=0.005)
    base = collections.Counter(d.qtypes for d in draws(traffic.QueryMix()))
    extra = (types[("SRV",)] + types[("PTR",)] - base[("SRV",)] - base[("PTR",)]) / len(got)
    assert extra == pytest.approx(0.05 * 2 / 3, abs=0.01)
    txt = next(d for d in got if d.qtypes == ("TXT",))
    assert txt.candidates() == [txt.name] and txt.name.endswith(".")


def nxdomain_share(mix: traffic.QueryMix) -> float:
    cat = catalog.build_catalog(seed=7)
    existing = {s.fqdn + "." for s in cat.services} | {n + "." for n in cat.external_names}
    nx = total = 0
    for lk in draws(mix, 5000):
        for cand in lk.candidates():
            total += 1
            if cand in existing:
                break
            nx += 1
    return nx / total


def test_ndots_and_search_path_length_drive_the_nxdomain_share():
    shipped = nxdomain_share(traffic.QueryMix())
    assert nxdomain_share(traffic.QueryMix(ndots=2)) < shipped - 0.2
    assert nxdomain_share(traffic.QueryMix(search=5)) > shipped + 0.05
    assert traffic.expand("api.github.com", "web", ndots=2) == [
        "api.github.com.",
        "api.github.com.web.svc.cluster.local.",
        "api.github.com.svc.cluster.local.",
        "api.github.com.cluster.local.",
    ]
    assert traffic.expand("redis", "data", search=4)[-2] == "redis.c.lab-project.internal."
    assert traffic.expand("redis", "data", search=1) == ["redis.data.svc.cluster.local.", "redis."]


def test_very_low_rates_keep_their_level():
    curve = traffic.RateCurve(base=2.0, seed=1)
    rates = [curve.rate(t) for t in range(0, 3600, 5)]
    assert 1.0 < sum(rates) / len(rates) < 3.0


def test_shipped_and_demo_presets_are_unchanged():
    s = PRESETS["shipped"]
    assert (s.instances, s.step, s.seed, s.base_rates, s.episodes_per_class, s.warmup) == (
        4, 2.0, 2026, (110.0, 140.0, 170.0, 200.0), 8, 60.0,
    )  # fmt: skip
    for name in ("shipped", "demo"):
        p = PRESETS[name]
        assert (p.release, p.cache, p.rewrite, p.autopath) == ("", True, False, False)
        assert p.mix.is_default


ENVS = sorted(n for n in PRESETS if n.startswith("env-"))
FAULTY_ENVS = [n for n in ENVS if not PRESETS[n].healthy_minutes]
HEALTHY_ENVS = [n for n in ENVS if PRESETS[n].healthy_minutes]


@pytest.mark.parametrize("name", FAULTY_ENVS)
def test_environment_presets_learn_normal_first_then_see_every_class(name):
    p = PRESETS[name]
    schedule = p.schedule()
    assert min(it.at for it in schedule if it.kind != "end") >= 12 * 60
    assert {it.kind for it in schedule if it.anomaly} == set(faults.FAULT_CLASSES)
    assert any(not it.anomaly and it.kind != "end" for it in schedule)
    card = environment_card(name, p, schedule)
    json.dumps(card)  # goes into meta.json
    assert card["healthy_minutes_before_first_fault"] >= 12
    assert card["step_seconds"] == p.step and card["plugins"]


@pytest.mark.parametrize("name", HEALTHY_ENVS)
def test_healthy_soaks_hold_only_benign_events_for_their_whole_length(name):
    p = PRESETS[name]
    schedule = p.schedule()
    assert not any(it.anomaly for it in schedule)
    events = [it for it in schedule if it.kind != "end"]
    assert {it.kind for it in events} == set(faults.BENIGN_EVENTS)
    assert min(it.at for it in events) >= p.warmup  # learning is never disturbed
    ends = [it for it in schedule if it.kind == "end"]
    assert len(ends) == p.instances and {it.at for it in ends} == {p.healthy_minutes * 60}
    per_instance = {
        i: sorted(it.at for it in events if it.instance == i) for i in range(p.instances)
    }
    for times in per_instance.values():  # a benign event every gap, none closer
        assert times and all(b - a >= p.gap[0] for a, b in zip(times, times[1:], strict=False))
    card = environment_card(name, p, schedule)
    assert card["planned_minutes"] == p.healthy_minutes
    json.dumps(card)


def test_environments_differ_from_the_shipped_one():
    envs = [PRESETS[n] for n in ENVS]
    assert any(not p.cache for p in envs) and any(p.rewrite for p in envs)
    assert any(p.autopath for p in envs) and any(p.release for p in envs)
    assert any(p.mix.aaaa_share == 0 for p in envs) and any(p.mix.ndots != 5 for p in envs)
    assert any(p.step != 2.0 for p in envs)
    assert min(min(p.base_rates) for p in envs) <= 5 and max(max(p.base_rates) for p in envs) >= 500


def test_cpu_limit_below_the_minimum_quota_stretches_the_period(tmp_path):
    # A CoreDNS of a few lookups/s uses < 0.01 cores: 1 ms per 100 ms would not starve it.
    lim = faults.CpuLimiter("x", root=tmp_path)
    assert lim.mode == "cgroup"
    read = lambda f: (lim.path / f).read_text()  # noqa: E731
    lim.limit(1234, 0.05)
    assert (read("cpu.cfs_period_us"), read("cpu.cfs_quota_us")) == ("100000", "5000")
    lim.limit(1234, 0.002)
    assert (read("cpu.cfs_period_us"), read("cpu.cfs_quota_us")) == ("500000", "1000")
    lim.release(1234)
    assert (read("cpu.cfs_period_us"), read("cpu.cfs_quota_us")) == ("100000", "-1")
