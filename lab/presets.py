"""Named lab runs. `shipped` made data/lab-v1; `demo` is the README's short run; `env-*` are
environments that differ from the shipped one (release, plugins, query mix, rates, step) and
made data/envs/ (docs/dataset.md, "Environments")."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import faults, traffic
from .coredns import FrontConfig
from .traffic import QueryMix


@dataclass(frozen=True)
class Preset:
    instances: int
    step: float
    seed: int
    base_rates: tuple[float, ...]
    classes: tuple[str, ...]
    episodes_per_class: int
    warmup: float
    gap: tuple[float, float]
    duration: tuple[float, float]
    benign_probability: float
    # The environment (defaults: the shipped one). release "" is the pinned CoreDNS
    # (.tools/bin/coredns); another one runs .tools/coredns-vX.Y.Z/coredns, built by
    # scripts/build-coredns.sh.
    release: str = ""
    cache: bool = True
    rewrite: bool = False
    autopath: bool = False
    mix: QueryMix = field(default_factory=QueryMix)
    description: str = ""
    # > 0: a healthy soak of this many minutes, benign events only (classes unused)
    healthy_minutes: float = 0.0

    def schedule(self) -> list[faults.Item]:
        """The seeded schedule this preset plays."""
        if self.healthy_minutes:
            return faults.build_healthy_schedule(
                self.instances, self.seed, self.warmup, self.gap, self.healthy_minutes
            )
        return faults.build_schedule(
            self.instances, self.classes, self.episodes_per_class, self.seed, self.warmup,
            self.gap, self.duration, self.benign_probability,
        )  # fmt: skip


# Every environment preset starts with >= 12 healthy minutes (the detector learns each
# instance's own normal in the first ~10) before its first fault.
ENV_WARMUP = 750.0
SECOND_RELEASE = "v1.12.4"
THIRD_RELEASE = "v1.11.4"

PRESETS = {
    # The shipped dataset: a fleet of 4, every class 8 times at spread intensities.
    "shipped": Preset(
        instances=4, step=2.0, seed=2026, base_rates=(110.0, 140.0, 170.0, 200.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=8, warmup=60.0,
        gap=(35.0, 75.0), duration=(30.0, 70.0), benign_probability=0.6,
    ),
    # A couple of minutes on one instance: the README's first look.
    "demo": Preset(
        instances=1, step=2.0, seed=1, base_rates=(150.0,),
        classes=("upstream_latency", "random_subdomain"), episodes_per_class=1, warmup=30.0,
        gap=(20.0, 25.0), duration=(25.0, 30.0), benign_probability=1.0,
    ),
    # -- environments (data/envs/<name>) ------------------------------------------------
    "env-small": Preset(
        instances=4, step=2.0, seed=3101, base_rates=(4.0, 8.0, 12.0, 16.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=3, warmup=ENV_WARMUP,
        gap=(55.0, 100.0), duration=(35.0, 65.0), benign_probability=0.6,
        description="a small cluster: 3-20 lookups/s, pinned release, full chain",
    ),
    "env-nocache-rewrite": Preset(
        instances=4, step=2.0, seed=3102, base_rates=(60.0, 80.0, 100.0, 120.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=3, warmup=ENV_WARMUP,
        gap=(55.0, 100.0), duration=(35.0, 65.0), benign_probability=0.6,
        release=SECOND_RELEASE, cache=False, rewrite=True, mix=QueryMix(aaaa_share=0.0),
        description="no cache, a rewrite rule, IPv4-only clients (A only), older release",
    ),
    "env-autopath": Preset(
        instances=4, step=2.0, seed=3103, base_rates=(150.0, 200.0, 250.0, 300.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=3, warmup=ENV_WARMUP,
        gap=(55.0, 100.0), duration=(35.0, 65.0), benign_probability=0.6,
        release=SECOND_RELEASE, autopath=True, mix=QueryMix(ndots=2, other_share=0.05),
        description="autopath from a resolv.conf, ndots 2, 5% SRV/PTR/TXT, older release",
    ),
    "env-large": Preset(
        instances=2, step=2.0, seed=3104, base_rates=(500.0, 800.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=1, warmup=ENV_WARMUP,
        gap=(70.0, 120.0), duration=(35.0, 60.0), benign_probability=0.6,
        description="a busy cluster: 500-900 lookups/s per instance, pinned release",
    ),
    "env-step15": Preset(
        instances=4, step=15.0, seed=3105, base_rates=(20.0, 80.0, 160.0, 300.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=2, warmup=ENV_WARMUP,
        gap=(170.0, 280.0), duration=(120.0, 220.0), benign_probability=0.6,
        description="a 15 s scrape interval, faults of 2-4 min, 20-300 lookups/s",
    ),
    # Hours of mostly healthy traffic for the false-alarm rate: a fault every ~15 min per
    # instance (the other recordings have one every minute or two), benign events between.
    "env-soak": Preset(
        instances=6, step=2.0, seed=3106, base_rates=(5.0, 12.0, 30.0, 80.0, 200.0, 400.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=1, warmup=ENV_WARMUP,
        gap=(600.0, 1000.0), duration=(40.0, 70.0), benign_probability=1.0,
        description="mostly healthy: 6 instances at 5-400 lookups/s, a fault per ~15 min each",
    ),
    # Recorded after learn_below / relearn were chosen on env-soak: the soak no choice saw.
    # Another release, a rewrite rule, a shorter search path, other types, other rates.
    "env-soak2": Preset(
        instances=6, step=2.0, seed=3107, base_rates=(8.0, 20.0, 50.0, 120.0, 300.0, 600.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=1, warmup=ENV_WARMUP,
        gap=(600.0, 1000.0), duration=(40.0, 70.0), benign_probability=1.0,
        release=SECOND_RELEASE, rewrite=True, mix=QueryMix(aaaa_share=0.5, search=2, other_share=0.03),
        description="mostly healthy, held out of every choice: 6 instances at 8-600 lookups/s, "
        "older release, a rewrite rule, half A-only clients, 2 search domains, 3% SRV/PTR/TXT",
    ),
    # The long held-out soak: recorded before the decision changes of the session that added
    # it were compared, scored once after. A third release, 8 instances for ~90 minutes.
    "env-soak3": Preset(
        instances=8, step=2.0, seed=3108, base_rates=(3.0, 10.0, 25.0, 60.0, 120.0, 250.0, 400.0, 150.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=2, warmup=ENV_WARMUP,
        gap=(800.0, 1300.0), duration=(40.0, 70.0), benign_probability=1.0,
        release=THIRD_RELEASE, mix=QueryMix(aaaa_share=0.3, ndots=3, search=3, other_share=0.02),
        description="the long held-out soak: 8 instances at 3-400 lookups/s for ~90 min, release "
        "1.11.4, 30% A+AAAA clients, ndots 3, 2% SRV/PTR/TXT",
    ),
    # The fourth soak, recorded after the aftermath analysis of 2026-12-03 looked at env-soak3's
    # alarms: held out of that session's choices (the alert's re-arm hold), scored once after.
    "env-soak4": Preset(
        instances=6, step=2.0, seed=3109, base_rates=(6.0, 15.0, 40.0, 100.0, 250.0, 700.0),
        classes=faults.FAULT_CLASSES, episodes_per_class=2, warmup=ENV_WARMUP,
        gap=(600.0, 900.0), duration=(40.0, 70.0), benign_probability=1.0,
        rewrite=True, mix=QueryMix(aaaa_share=0.7, ndots=4, search=3, other_share=0.04),
        description="the fourth held-out soak: 6 instances at 6-700 lookups/s for ~1 h, pinned "
        "release, a rewrite rule, 70% A+AAAA clients, ndots 4, 4% SRV/PTR/TXT",
    ),
    # A cluster's day, compressed: 36 instances of 2-120 lookups/s (most clusters are small)
    # for ~2 h, no faults, a benign event every 10-20 min each (restart, reload, rate change,
    # burst), ndots 5 as Kubernetes sets it. Recorded after every choice of 2026-12-03 and
    # scored once: the false-alarm rate of healthy days, without the aftermath of faults.
    "env-day": Preset(
        instances=36, step=2.0, seed=3110,
        base_rates=tuple(round(2.0 * (60.0 ** (k / 35)), 1) for k in range(36)),
        classes=(), episodes_per_class=0, warmup=ENV_WARMUP,
        gap=(600.0, 1200.0), duration=(0.0, 0.0), benign_probability=1.0,
        release=THIRD_RELEASE, mix=QueryMix(aaaa_share=0.5, ndots=5, search=3, other_share=0.01),
        healthy_minutes=110.0,
        description="a healthy day, compressed: 36 instances at 2-120 lookups/s for ~2 h, no "
        "faults, a benign event every 10-20 min each, release 1.11.4, half A+AAAA clients, "
        "ndots 5",
    ),
}  # fmt: skip


def environment_card(name: str, p: Preset, schedule: list) -> dict:
    """What makes this recording's environment: release, plugins, query mix, rates, step."""
    end = max(it.at for it in schedule)
    first = min((it.at for it in schedule if it.anomaly), default=end)
    return {
        "name": name, "description": p.description, "release": p.release or "pinned",
        "plugins": FrontConfig(cache=p.cache, rewrite=p.rewrite, autopath=p.autopath).plugins(),
        "query_mix": p.mix.describe(),
        "search_path": traffic.search_path("<ns>", length=p.mix.search),
        "base_lookups_per_s": list(p.base_rates), "instances": p.instances,
        "step_seconds": p.step, "planned_minutes": round(end / 60, 1),
        "healthy_minutes_before_first_fault": round(first / 60, 1),
        "fault_duration_s": list(p.duration), "gap_s": list(p.gap),
        "episodes_per_class": p.episodes_per_class,
    }  # fmt: skip
