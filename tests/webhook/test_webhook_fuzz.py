"""10,000+ fuzzed bad deliveries: always 4xx (never 5xx, never an exception), store unchanged."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from webhook_fuzzlib import (
    FUZZ_SETTINGS,
    bad_bodies,
    damaged_bodies,
    json_bodies,
    mutated_payloads,
)
from webhook_testlib import BEARER, TOKEN, alert, payload


def snapshot(store) -> str:
    """A digest of every row the receiver can write."""
    h = hashlib.sha256()
    for table in ("deliveries", "alerts", "occurrences", "verdicts"):
        for row in store.conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
            h.update(repr(row).encode())
    return h.hexdigest()


def test_ten_thousand_bad_payloads(app, client, store):
    # Some real data first, so "unchanged" is about more than an empty store.
    for i in range(3):
        assert (
            client.post("/webhook", json=payload(alert(f"seed{i}")), headers=BEARER).status_code
            == 200
        )
    before = snapshot(store)
    counts = {"mutated": 0, "json": 0, "damaged": 0}
    statuses: dict[int, int] = {}

    def send(kind: str, body: bytes) -> None:
        counts[kind] += 1
        r = client.post(
            "/webhook", data=body, headers={**BEARER, "Content-Type": "application/json"}
        )
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code in (400, 413), (r.status_code, body[:300])
        assert r.is_json and r.json["status"] == "error" and r.json["error"]

    @settings(FUZZ_SETTINGS, max_examples=5000)
    @given(mutated_payloads())
    def mutated(p):
        send("mutated", json.dumps(p).encode())

    @settings(FUZZ_SETTINGS, max_examples=2500)
    @given(json_bodies())
    def arbitrary_json(body):
        send("json", body)

    @settings(FUZZ_SETTINGS, max_examples=2600)
    @given(damaged_bodies())
    def damaged(body):
        send("damaged", body)

    mutated()
    arbitrary_json()
    damaged()
    total = sum(counts.values())
    print(f"fuzzed {total} bad payloads: {counts}, responses {statuses}")
    assert total >= 10_000, counts
    assert snapshot(store) == before
    # The receiver still works afterwards.
    assert client.post("/webhook", json=payload(alert("after")), headers=BEARER).status_code == 200


@pytest.fixture(scope="module")
def shared_client(tmp_path_factory):
    from coredns_anomaly.webhook.app import create_app
    from coredns_anomaly.webhook.config import Settings

    db = tmp_path_factory.mktemp("fuzz") / "f.db"
    return create_app(Settings(db=str(db), bearer_token=TOKEN)).test_client()


def test_bad_payloads_whatever_the_content_type(shared_client):
    """Never stored and never 5xx, whatever the declared content type (Alertmanager sends JSON)."""

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(
        bad_bodies(),
        st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
        ),
    )
    def check(body, ctype):
        r = shared_client.post("/webhook", data=body, headers={**BEARER, "Content-Type": ctype})
        # Anything but JSON is refused before the body is read (a CSRF form cannot send JSON).
        assert r.status_code in ((400, 413) if ctype == "application/json" else (415,))

    check()
