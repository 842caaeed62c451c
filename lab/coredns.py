"""Real CoreDNS servers for the lab: the cluster DNS under test and its upstream.

The front server carries the plugins a cluster's CoreDNS runs (the `file` plugin stands in for
`kubernetes`, which needs an API server). The upstream is a second CoreDNS, authoritative with
`file` for the external zones. Config changes go through the `reload` plugin, as in a cluster.
"""

from __future__ import annotations

import logging
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import catalog, processes

log = logging.getLogger(__name__)


@dataclass
class FrontConfig:
    """Knobs of the cluster CoreDNS's Corefile; faults and benign reloads change them."""

    cache_ttl: int = 30
    cache_success: int = 9984
    cache_denial: int = 9984
    acl_block_types: tuple[str, ...] = ()  # non-empty: REFUSED for these types (misconfig)
    acl_block_all: bool = False
    generation: int = 0  # bumping it alone makes a benign reload
    # Plugin chain variants of an environment (the defaults are the shipped datasets' chain).
    cache: bool = True
    rewrite: bool = False  # a harmless rewrite every cluster query passes through
    autopath: bool = False  # server-side search path, from resolv.conf in the zone dir

    def plugins(self) -> list[str]:
        """The front's plugins, as the dataset card lists them."""
        out = ["errors", "health", "ready", "prometheus", "acl (misconfig only)"]
        out += ["rewrite"] * self.rewrite + ["autopath"] * self.autopath
        out += ["file (cluster.local)", "forward"] + ["cache"] * self.cache
        return out + ["loop", "reload", "loadbalance"]

    def render(self, ports: dict[str, int], zone_dir: Path, upstream: str) -> str:
        acl = ""
        if self.acl_block_all:
            acl = "    acl {\n        block\n    }\n"
        elif self.acl_block_types:
            acl = f"    acl {{\n        block type {' '.join(self.acl_block_types)}\n    }}\n"
        rewrite = autopath = ""
        cache = (
            f"    cache {self.cache_ttl} {{\n"
            f"        success {self.cache_success}\n"
            f"        denial {self.cache_denial}\n"
            f"    }}\n"
        )
        if not self.cache:
            cache = ""
        if self.rewrite:
            # Rewrites every service name onto itself: the plugin's work, the same answers.
            rewrite = "    rewrite name suffix .svc.cluster.local .svc.cluster.local\n"
        if self.autopath:
            # A resolv.conf-style file as the search path source (write_zones writes it).
            autopath = f"    autopath {catalog.CLUSTER_DOMAIN} {zone_dir / AUTOPATH_RESOLV}\n"
        return (
            f"# coredns-anomaly lab front, generation {self.generation}\n"
            f".:{ports['dns']} {{\n"
            f"    bind 127.0.0.1\n"
            f"    errors\n"
            f"    health 127.0.0.1:{ports['health']}\n"
            f"    ready 127.0.0.1:{ports['ready']}\n"
            f"    prometheus 127.0.0.1:{ports['metrics']}\n"
            f"{acl}"
            f"{rewrite}"
            f"{autopath}"
            f"    file {zone_dir / 'cluster.local.db'} {catalog.CLUSTER_DOMAIN}\n"
            f"    forward . {upstream} {{\n"
            f"        max_concurrent 1000\n"
            # Harmless knob a benign reload turns (the reload plugin ignores comment edits).
            f"        expire {10 + self.generation % 7}s\n"
            f"    }}\n"
            f"{cache}"
            f"    loop\n"
            f"    reload 2s 1s\n"
            f"    loadbalance\n"
            f"}}\n"
        )


# The search path autopath applies: the pods of one namespace, as when autopath reads a
# resolv.conf file instead of asking the kubernetes plugin for each pod's namespace.
AUTOPATH_RESOLV = "resolv.conf"
AUTOPATH_NAMESPACE = "default"


def autopath_resolv_conf(namespace: str = AUTOPATH_NAMESPACE) -> str:
    d = catalog.CLUSTER_DOMAIN
    return f"search {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n"


def write_zones(zone_dir: Path, cat: catalog.Catalog) -> None:
    zone_dir.mkdir(parents=True, exist_ok=True)
    (zone_dir / "cluster.local.db").write_text(catalog.cluster_zone(cat))
    (zone_dir / AUTOPATH_RESOLV).write_text(autopath_resolv_conf())
    for tld in catalog.EXTERNAL_TLDS:
        (zone_dir / f"{tld}.db").write_text(catalog.external_zone(cat, tld))


def upstream_corefile(port: int, metrics_port: int, zone_dir: Path) -> str:
    blocks = [
        f"{tld}.:{port} {{\n    bind 127.0.0.1\n    file {zone_dir / (tld + '.db')}\n"
        f"    prometheus 127.0.0.1:{metrics_port}\n}}\n"
        for tld in catalog.EXTERNAL_TLDS
    ]
    # Everything else does not exist, as a recursive resolver would answer.
    blocks.append(
        f".:{port} {{\n    bind 127.0.0.1\n    template ANY ANY {{\n        rcode NXDOMAIN\n"
        f"    }}\n    prometheus 127.0.0.1:{metrics_port}\n}}\n"
    )
    return "".join(blocks)


def coredns_version(binary: str) -> str:
    out = subprocess.run([binary, "-version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"CoreDNS-([\w.\-]+)", out)
    return m.group(1) if m else out.strip()


@dataclass
class CoreDNSServer:
    """One CoreDNS process with its Corefile in its own directory."""

    name: str
    workdir: Path
    binary: str
    corefile: str
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @property
    def corefile_path(self) -> Path:
        return self.workdir / "Corefile"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}/metrics"

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.corefile_path.write_text(self.corefile)
        self.proc = processes.spawn(
            [self.binary, "-conf", str(self.corefile_path)],
            log_path=self.workdir / "coredns.log",
            cwd=self.workdir,
            env={"GOMAXPROCS": "2", "PATH": "/usr/bin:/bin"},
        )
        probe = self.ports.get("ready")
        url = f"http://127.0.0.1:{probe}/ready" if probe else self.metrics_url
        processes.wait_http(url, timeout, self.proc)
        log.debug("%s up (pid %s)", self.name, self.proc.pid)

    def stop(self) -> None:
        if self.proc is not None:
            processes.stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self, corefile: str, timeout: float = 15.0) -> float:
        """Write a new Corefile and wait until the reload plugin has applied it.

        Returns the wall time at which CoreDNS reported the new config, so a label's start is
        when the change took effect, not when the file was written.
        """
        log_path = self.workdir / "coredns.log"
        done_before = log_path.read_text(errors="replace").count("Reloading complete")
        self.corefile = corefile
        tmp = self.corefile_path.with_suffix(".tmp")
        tmp.write_text(corefile)
        tmp.replace(self.corefile_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # The reload plugin logs each completed reload; a refused config logs an error.
            text = log_path.read_text(errors="replace")
            if text.count("Reloading complete") > done_before:
                return time.time()
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: CoreDNS did not apply the new Corefile in {timeout}s")
