"""A DNS-aware fault injector between the cluster CoreDNS and its upstream.

It plays the network and the upstream resolver going bad: added latency, dropped queries
(forward timeouts), SERVFAIL answers. `tc netem` would be the kernel's way, but it needs
per-port filters on loopback and kernel modules a fresh machine may lack; this proxy runs
anywhere and its knobs are exact. UDP and TCP (for truncated answers) are both relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import threading
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Impairment:
    """What the path to the upstream does right now. All zero: a healthy upstream."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    drop: float = 0.0
    servfail: float = 0.0


def servfail_reply(query: bytes) -> bytes:
    """The query turned into a SERVFAIL answer: QR set, RD kept, RA set, rcode 2, no records."""
    if len(query) < 12:
        return b""
    flags = struct.unpack("!H", query[2:4])[0]
    flags = 0x8000 | (flags & 0x7900) | 0x0080 | 2
    qd = query[4:6]
    return query[:2] + struct.pack("!H", flags) + qd + b"\x00\x00\x00\x00\x00\x00" + query[12:]


class FaultProxy:
    """Relays DNS from a listen port to an upstream, impairing it on demand.

    Runs its own asyncio loop in a thread so the lab's controller stays synchronous.
    """

    def __init__(self, listen_port: int, upstream: tuple[str, int], seed: int = 0) -> None:
        self.listen = ("127.0.0.1", listen_port)
        self.upstream = upstream
        self.impairment = Impairment()
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self._ready = threading.Event()
        self._pending: dict[int, tuple[tuple[str, int], bytes]] = {}
        self._next_id = 0
        self._down = None  # transport toward clients
        self._up = None  # transport toward upstream

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def set(self, impairment: Impairment) -> None:
        self.impairment = impairment

    # -- internals ---------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.close()

    async def _serve(self) -> None:
        proxy = self

        class Down(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                proxy._from_client(data, addr)

        class Up(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr) -> None:
                proxy._from_upstream(data)

        self._down, _ = await self._loop.create_datagram_endpoint(Down, local_addr=self.listen)
        self._up, _ = await self._loop.create_datagram_endpoint(
            Up, remote_addr=self.upstream, local_addr=("127.0.0.1", 0)
        )
        await asyncio.start_server(self._tcp_client, *self.listen)

    def _verdict(self) -> str:
        imp = self.impairment
        r = self._rng.random()
        if r < imp.drop:
            return "drop"
        if r < imp.drop + imp.servfail:
            return "servfail"
        return "pass"

    def _delay(self) -> float:
        imp = self.impairment
        if imp.delay_s <= 0:
            return 0.0
        return max(0.0, self._rng.gauss(imp.delay_s, imp.jitter_s))

    def _from_client(self, data: bytes, addr) -> None:
        if len(data) < 12:
            return
        verdict = self._verdict()
        if verdict == "drop":
            return
        if verdict == "servfail":
            self._later(self._delay(), self._down.sendto, servfail_reply(data), addr)
            return
        self._next_id = (self._next_id + 1) & 0xFFFF
        new_id = self._next_id
        self._pending[new_id] = (addr, data[:2])
        if len(self._pending) > 50_000:  # upstream never answered these; forget the oldest
            for k in list(self._pending)[:10_000]:
                self._pending.pop(k, None)
        self._up.sendto(struct.pack("!H", new_id) + data[2:])

    def _from_upstream(self, data: bytes) -> None:
        if len(data) < 12:
            return
        entry = self._pending.pop(struct.unpack("!H", data[:2])[0], None)
        if entry is None:
            return
        addr, orig_id = entry
        self._later(self._delay(), self._down.sendto, orig_id + data[2:], addr)

    def _later(self, delay: float, fn, *args) -> None:
        if delay > 0:
            self._loop.call_later(delay, fn, *args)
        else:
            fn(*args)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        up_writer = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            while True:
                hdr = await reader.readexactly(2)
                query = await reader.readexactly(struct.unpack("!H", hdr)[0])
                verdict = self._verdict()
                if verdict == "drop":
                    continue
                if verdict == "servfail":
                    reply = servfail_reply(query)
                else:
                    up_writer.write(hdr + query)
                    await up_writer.drain()
                    rhdr = await up_reader.readexactly(2)
                    reply = await up_reader.readexactly(struct.unpack("!H", rhdr)[0])
                delay = self._delay()
                if delay:
                    await asyncio.sleep(delay)
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
