"""Cluster DNS traffic: what pods ask, how their resolver expands it, and how fast.

The model is plain and seeded (tested without a network); the generator sends it over real
UDP (and TCP after truncation) with asyncio. Pods resolve through the Kubernetes search path
with ndots:5, so a lookup of `api.github.com` first tries three cluster suffixes and gets
NXDOMAIN three times: that is why a healthy cluster DNS answers so many NXDOMAINs.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import random
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from . import catalog as cat_mod

QTYPE = {"A": 1, "AAAA": 28, "SRV": 33, "PTR": 12, "TXT": 16}
RCODE_NAMES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}


# Node search domains a cloud appends after the cluster's three (they all end in NXDOMAIN
# upstream): a search path longer than 3 walks into these.
NODE_SEARCH_DOMAINS = ("c.lab-project.internal", "google.internal", "ec2.internal")


def search_path(namespace: str, domain: str = cat_mod.CLUSTER_DOMAIN, length: int = 3) -> list[str]:
    """A pod's resolv.conf search list: the cluster's 3 suffixes, cut or extended to `length`."""
    full = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *NODE_SEARCH_DOMAINS]
    return full[: max(0, min(length, len(full)))]


def expand(name: str, namespace: str, ndots: int = 5, search: int = 3) -> list[str]:
    """The absolute names a glibc/musl resolver tries for `name`, in order."""
    if name.endswith("."):
        return [name]
    suffixed = [f"{name}.{s}." for s in search_path(namespace, length=search)]
    if name.count(".") >= ndots:
        return [name + "."] + suffixed
    return suffixed + [name + "."]


class Zipf:
    """Draws indices 0..n-1 with probability proportional to 1/(i+1)^s."""

    def __init__(self, n: int, s: float = 1.1) -> None:
        weights = [1.0 / (i + 1) ** s for i in range(n)]
        total = sum(weights)
        acc, self.cdf = 0.0, []
        for w in weights:
            acc += w / total
            self.cdf.append(acc)

    def draw(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self.cdf, rng.random()), len(self.cdf) - 1)


@dataclass(frozen=True)
class Lookup:
    """One getaddrinfo()-like call: a name and the query types asked together."""

    name: str
    namespace: str
    qtypes: tuple[str, ...] = ("A", "AAAA")
    ndots: int = 5
    search: int = 3  # search path length (resolv.conf `search` entries)

    def candidates(self) -> list[str]:
        if self.qtypes in (("PTR",), ("SRV",), ("TXT",)):
            return [self.name if self.name.endswith(".") else self.name + "."]
        return expand(self.name, self.namespace, self.ndots, self.search)


# The mix of lookups a pod makes; weights sum to 1.
LOOKUP_MIX = {
    "service_same_ns": 0.36,
    "service_other_ns": 0.14,
    "service_fqdn": 0.08,
    "external": 0.34,
    "external_fqdn": 0.03,
    "srv": 0.025,
    "ptr": 0.02,
    "large": 0.005,
}


@dataclass(frozen=True)
class QueryMix:
    """Environment knobs of the query mix; the defaults are the shipped datasets' traffic.

    aaaa_share: share of lookups asked as an A+AAAA pair (getaddrinfo with AF_UNSPEC); the
        rest ask A only (0.0: an IPv4-only cluster whose clients send A only).
    ndots, search: the pods' resolv.conf (`options ndots:N`, number of `search` entries):
        fewer ndots or a shorter search path means fewer NXDOMAIN walks, more entries more.
    other_share: share of extra lookups of other types (SRV, PTR, TXT in equal parts) drawn
        before the regular mix (which already holds 2.5% SRV and 2% PTR).
    """

    aaaa_share: float = 1.0
    ndots: int = 5
    search: int = 3
    other_share: float = 0.0

    @property
    def is_default(self) -> bool:
        return self == QueryMix()

    def describe(self) -> dict:
        return {
            "aaaa_share": self.aaaa_share, "ndots": self.ndots, "search_path_length": self.search,
            "other_types_share": self.other_share,
        }  # fmt: skip


class LookupModel:
    """Draws lookups with Zipf-like popularity over the catalog's names."""

    def __init__(
        self, catalog: cat_mod.Catalog, seed: int = 0, mix: QueryMix | None = None
    ) -> None:
        self.cat = catalog
        self.mix = mix or QueryMix()
        self.rng = random.Random(seed)
        self.services = list(catalog.services)
        self.rng.shuffle(self.services)
        self.external = list(catalog.external_names)
        self.rng.shuffle(self.external)
        self.svc_zipf = Zipf(len(self.services))
        self.ext_zipf = Zipf(len(self.external))
        self.kinds = list(LOOKUP_MIX)
        acc, self.kind_cdf = 0.0, []
        for k in self.kinds:
            acc += LOOKUP_MIX[k]
            self.kind_cdf.append(acc)

    def draw(self) -> Lookup:
        if self.mix.is_default:  # the shipped traffic, draw for draw
            return self._draw_mix()
        mix, rng = self.mix, self.rng
        if mix.other_share > 0 and rng.random() < mix.other_share:
            return self._draw_other()
        lk = self._draw_mix()
        qtypes = lk.qtypes
        if qtypes == ("A", "AAAA") and mix.aaaa_share < 1 and rng.random() >= mix.aaaa_share:
            qtypes = ("A",)
        return Lookup(lk.name, lk.namespace, qtypes, mix.ndots, mix.search)

    def _draw_other(self) -> Lookup:
        rng = self.rng
        svc = self.services[self.svc_zipf.draw(rng)]
        kind = rng.choice(("srv", "ptr", "txt"))
        if kind == "srv":
            return Lookup(f"_http._tcp.{svc.fqdn}.", svc.namespace, ("SRV",))
        if kind == "ptr":
            octets = svc.ip.split(".")
            return Lookup(".".join(reversed(octets)) + ".in-addr.arpa.", svc.namespace, ("PTR",))
        return Lookup(self.external[self.ext_zipf.draw(rng)] + ".", svc.namespace, ("TXT",))

    def _draw_mix(self) -> Lookup:
        rng = self.rng
        kind = self.kinds[min(bisect.bisect_left(self.kind_cdf, rng.random()), len(self.kinds) - 1)]
        svc = self.services[self.svc_zipf.draw(rng)]
        client_ns = svc.namespace if rng.random() < 0.8 else rng.choice(cat_mod.NAMESPACES)
        if kind == "service_same_ns":
            return Lookup(svc.name, svc.namespace)
        if kind == "service_other_ns":
            return Lookup(f"{svc.name}.{svc.namespace}", client_ns)
        if kind == "service_fqdn":
            return Lookup(svc.fqdn, client_ns)
        if kind in ("external", "external_fqdn"):
            name = self.external[self.ext_zipf.draw(rng)]
            return Lookup(name + ("." if kind == "external_fqdn" else ""), client_ns)
        if kind == "srv":
            return Lookup(f"_http._tcp.{svc.fqdn}.", client_ns, ("SRV",))
        if kind == "ptr":
            octets = svc.ip.split(".")
            return Lookup(".".join(reversed(octets)) + ".in-addr.arpa.", client_ns, ("PTR",))
        return Lookup(rng.choice(self.cat.large_names), client_ns, ("A",))


@dataclass
class RateCurve:
    """Lookups per second: a slow daily-like swing, a slower random walk, and noise.

    `multiplier` steers it while running (benign rate changes and bursts, or a user).
    """

    base: float = 150.0
    swing: float = 0.25
    period_s: float = 900.0
    noise: float = 0.08
    seed: int = 0
    multiplier: float = 1.0
    _walk: float = 0.0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._phase = self._rng.random() * 2 * math.pi

    def rate(self, t: float) -> float:
        self._walk = 0.995 * self._walk + self._rng.gauss(0, 0.01)
        level = 1 + self.swing * math.sin(2 * math.pi * t / self.period_s + self._phase)
        level *= 1 + max(-0.5, min(0.5, self._walk))
        level *= max(0.0, 1 + self._rng.gauss(0, self.noise))
        return max(0.0, self.base * self.multiplier * level)


_wire_cache: dict[tuple[str, str, bool], bytes] = {}


def query_wire(name: str, qtype: str, edns: bool = False) -> bytes:
    """Wire-format query with ID 0 (patched per send); built once per name with dnspython."""
    key = (name, qtype, edns)
    wire = _wire_cache.get(key)
    if wire is None:
        import dns.message

        msg = dns.message.make_query(name, qtype, use_edns=0 if edns else False)
        msg.id = 0
        wire = msg.to_wire()
        _wire_cache[key] = wire
    return wire


class DnsClient(asyncio.DatagramProtocol):
    """Many outstanding UDP queries to one server, matched by ID; TCP retry on truncation."""

    def __init__(self, server: tuple[str, int], stats: Counter, timeout: float = 2.0) -> None:
        self.server = server
        self.stats = stats
        self.timeout = timeout
        self.pending: dict[int, asyncio.Future] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._id = random.randrange(65536)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) >= 4:
            fut = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    def error_received(self, exc) -> None:
        self.stats["send_error"] += 1

    async def query(self, name: str, qtype: str) -> int | None:
        """rcode of the answer, or None on timeout."""
        for _ in range(len(self.pending) + 1):
            self._id = (self._id + 1) & 0xFFFF
            if self._id not in self.pending:
                break
        qid = self._id
        fut = asyncio.get_running_loop().create_future()
        self.pending[qid] = fut
        self.transport.sendto(struct.pack("!H", qid) + query_wire(name, qtype)[2:])
        self.stats["sent"] += 1
        try:
            data = await asyncio.wait_for(fut, self.timeout)
        except asyncio.TimeoutError:
            self.pending.pop(qid, None)
            self.stats["timeout"] += 1
            return None
        if data[2] & 0x02:  # TC: the answer did not fit, ask again over TCP
            self.stats["truncated"] += 1
            data = await self._tcp(qid, name, qtype)
            if data is None:
                return None
        rcode = data[3] & 0x0F
        self.stats[RCODE_NAMES.get(rcode, "OTHER")] += 1
        return rcode

    async def _tcp(self, qid: int, name: str, qtype: str) -> bytes | None:
        wire = struct.pack("!H", qid) + query_wire(name, qtype)[2:]
        writer = None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*self.server), self.timeout
            )
            writer.write(struct.pack("!H", len(wire)) + wire)
            await writer.drain()
            n = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), self.timeout))
            data = await asyncio.wait_for(reader.readexactly(n[0]), self.timeout)
            self.stats["tcp"] += 1
            return data
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            self.stats["timeout"] += 1
            return None
        finally:
            if writer is not None:
                with contextlib.suppress(Exception):
                    writer.close()


@dataclass
class TargetTraffic:
    """The traffic sent to one CoreDNS: its rate curve, lookup mix and extra streams."""

    server: tuple[str, int]
    curve: RateCurve
    model: LookupModel
    extra_large_rate: float = 0.0  # lookups/s of large answers (TCP fallback fault)
    stats: Counter = field(default_factory=Counter)


class TrafficGenerator:
    """Drives every target from one asyncio loop in a background thread."""

    def __init__(self, targets: list[TargetTraffic], max_inflight: int = 4000) -> None:
        self.targets = targets
        self.max_inflight = max_inflight
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._stop = False
        self._inflight = 0
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        self._stop = True
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            with contextlib.suppress(Exception):
                self._loop.close()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        clients = []
        for t in self.targets:
            _, proto = await loop.create_datagram_endpoint(
                lambda t=t: DnsClient(t.server, t.stats),
                remote_addr=t.server,
                local_addr=("127.0.0.1", 0),
            )
            clients.append(proto)
        self._started.set()
        t0 = time.monotonic()
        last = t0
        carry = [0.0] * len(self.targets)
        carry_large = [0.0] * len(self.targets)
        rng = random.Random(1)
        tasks: set[asyncio.Task] = set()
        while not self._stop:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            dt, last = now - last, now
            for i, (t, client) in enumerate(zip(self.targets, clients, strict=True)):
                carry[i] += t.curve.rate(now - t0) * dt
                carry_large[i] += t.extra_large_rate * dt
                n, carry[i] = int(carry[i]), carry[i] - int(carry[i])
                m, carry_large[i] = int(carry_large[i]), carry_large[i] - int(carry_large[i])
                for k in range(n + m):
                    if self._inflight >= self.max_inflight:
                        t.stats["shed"] += 1
                        continue
                    if k < n:
                        lk = t.model.draw()
                    else:
                        lk = Lookup(rng.choice(t.model.cat.large_names), "default", ("A",))
                    task = asyncio.ensure_future(self._lookup(client, lk))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _lookup(self, client: DnsClient, lk: Lookup) -> None:
        self._inflight += 1
        try:
            for cand in lk.candidates():
                rcodes = await asyncio.gather(*(client.query(cand, q) for q in lk.qtypes))
                # NOERROR (with or without data) ends the walk; timeouts give up like a
                # client whose attempts ran out; NXDOMAIN/SERVFAIL/REFUSED try the next name.
                if any(r == 0 for r in rcodes) or all(r is None for r in rcodes):
                    break
        finally:
            self._inflight -= 1
