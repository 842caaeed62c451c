"""Fixtures for the exporter suite: the shipped bundle, real pages, a tiny page server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from exporter_testlib import MODEL_DIR, FakeClock, PageServer

from coredns_anomaly.exporter import scrape
from coredns_anomaly.exporter.bundle import Bundle, load_bundle
from coredns_anomaly.exporter.service import Exporter, Settings


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    return load_bundle(MODEL_DIR)


@pytest.fixture
def page_servers() -> Iterator[Callable[[], PageServer]]:
    """A factory of tiny page servers (one per instance: the exporter keys targets by
    host:port, like Prometheus); all closed after the test."""
    made: list[PageServer] = []

    def make() -> PageServer:
        made.append(PageServer())
        return made[-1]

    yield make
    for srv in made:
        srv.close()


@pytest.fixture
def page_server(page_servers) -> PageServer:
    return page_servers()


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The scrape module's clock, advanced by the test (see FakeClock for why)."""
    c = FakeClock()
    monkeypatch.setattr(scrape, "time", c)
    return c


@pytest.fixture
def make_exporter() -> Iterator[Callable[..., Exporter]]:
    """Exporter(Settings(model=models/default, **kw)); closed after the test."""
    made: list[Exporter] = []

    def make(**kw) -> Exporter:
        kw.setdefault("model", str(MODEL_DIR))
        kw.setdefault("scrape_timeout", 0.5)
        x = Exporter(Settings(**kw))
        made.append(x)
        return x

    yield make
    for x in made:
        x.close()
