"""The alert store: durability settings, idempotency, occurrences, verdicts, label export."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest
from webhook_testlib import alert, payload

from coredns_anomaly.webhook.schema import parse_delivery
from coredns_anomaly.webhook.store import AlertFilter, AlertStore, StoreError, since_key


def delivery(*alerts, **kw):
    return parse_delivery(json.dumps(payload(*alerts, **kw)).encode())


@pytest.fixture
def st(tmp_path) -> AlertStore:
    s = AlertStore(str(tmp_path / "a.db"))
    s.init_schema()
    return s


def test_wal_and_full_sync(st):
    conn = st.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


def test_repeated_delivery_is_acknowledged_not_duplicated(st):
    d = delivery(alert("a"), alert("b"))
    first = st.store_delivery(d)
    again = st.store_delivery(d)
    assert (first.stored, first.duplicates, first.duplicate_delivery) == (2, 0, False)
    assert (again.stored, again.duplicates, again.duplicate_delivery) == (0, 2, True)
    assert again.delivery_id == first.delivery_id
    counts = st.conn.execute(
        "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM deliveries)"
    ).fetchone()
    assert counts == (2, 1)


def test_same_alert_in_a_new_notification_is_a_duplicate_alert(st):
    """Alertmanager re-sends firing alerts every repeat_interval: same key, new delivery."""
    st.store_delivery(delivery(alert("a")))
    p = payload(alert("a"), alert("b"))
    r = st.store_delivery(parse_delivery(json.dumps(p).encode()))
    assert (r.stored, r.duplicates, r.duplicate_delivery) == (1, 1, False)
    assert (
        st.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 2
    )  # raw payloads kept


def test_same_alert_in_two_groups_is_stored_per_group_but_one_occurrence(st):
    st.store_delivery(delivery(alert("a"), group_key="route-1"))
    st.store_delivery(delivery(alert("a"), group_key="route-2"))
    assert st.conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 2
    assert st.list_occurrences(AlertFilter())[1] == 1


def test_firing_then_resolved_folds_into_one_occurrence_in_any_order(st, tmp_path):
    firing = delivery(alert("a"))
    resolved = delivery(alert("a", status="resolved", ends_at="2026-11-22T01:30:00Z"))
    for order, s in (
        ((firing, resolved), st),
        ((resolved, firing), AlertStore(str(tmp_path / "b.db"))),
    ):
        s.init_schema()
        for d in order:
            s.store_delivery(d)
        (o,), total = s.list_occurrences(AlertFilter())
        assert total == 1
        assert o.status == "resolved" and o.ends_at == "2026-11-22T01:30:00.000000Z"
        assert (
            o.instance == "10.0.0.1:9153"
            and o.alertname == "CoreDNSAnomaly"
            and o.severity == "warning"
        )


def test_filters(st):
    st.store_delivery(delivery(alert("a", instance="dns-a:53")))
    st.store_delivery(
        delivery(alert("b", instance="dns-b:53", status="resolved", ends_at="2026-11-22T02:00:00Z"))
    )
    st.store_delivery(delivery(alert("c", alertname="CoreDNSErrorsHigh", instance=None)))
    st.set_verdict("a", "2026-11-22T01:00:00.123456Z", "false_alarm")

    def fps(**kw):
        return sorted(o.fingerprint for o in st.list_occurrences(AlertFilter(**kw))[0])

    assert fps() == ["a", "b", "c"]
    assert fps(status="resolved") == ["b"]
    assert fps(alertname="CoreDNSErrorsHigh") == ["c"]
    assert fps(instance="dns-") == ["a", "b"]
    assert fps(verdict="false_alarm") == ["a"]
    assert fps(verdict="none") == ["b", "c"]
    assert fps(verdict="labelled") == ["a"]
    assert fps(since="2026-11-22T01:30:00.000000Z") == ["a", "b", "c"]  # a, c still firing
    assert fps(since="2026-11-22T02:30:00.000000Z", status="resolved") == []
    assert (
        fps(limit=1) == ["a"]
        and st.list_occurrences(AlertFilter(limit=1, offset=2))[0][0].fingerprint == "c"
    )
    assert st.facets()["alertnames"] == ["CoreDNSAnomaly", "CoreDNSErrorsHigh"]


def test_verdicts_and_their_log(st):
    st.store_delivery(delivery(alert("a")))
    sa = "2026-11-22T01:00:00.123456Z"
    assert st.set_verdict(
        "a", sa, "anomaly", anomaly_class="upstream_latency", comment="real", author="basic:x"
    )
    assert st.get_occurrence("a", sa).verdict_class == "upstream_latency"
    assert st.set_verdict("a", sa, "false_alarm", anomaly_class="ignored")
    o = st.get_occurrence("a", sa)
    assert (o.verdict, o.verdict_class) == ("false_alarm", "")
    assert st.set_verdict("a", sa, None)
    assert st.get_occurrence("a", sa).verdict is None
    assert not st.set_verdict("nope", sa, "anomaly")
    with pytest.raises(ValueError):
        st.set_verdict("a", sa, "anomaly", anomaly_class="two words")
    assert st.conn.execute("SELECT count(*) FROM verdict_log").fetchone()[0] == 3


def test_label_records_verified_weak_and_own(st):
    resolved = dict(status="resolved", ends_at="2026-11-22T01:20:00Z")
    st.store_delivery(delivery(alert("ours", **resolved)))
    st.store_delivery(
        delivery(alert("mixin", alertname="CoreDNSErrorsHigh", instance=None, **resolved))
    )
    st.store_delivery(
        delivery(alert("other", alertname="CoreDNSLatencyHigh", instance="dns-b:53", **resolved))
    )
    sa = "2026-11-22T01:00:00.123456Z"
    st.set_verdict("ours", sa, "anomaly", anomaly_class="upstream_latency")
    assert [r.fingerprint for r in st.label_records()] == ["ours"]

    records = {r.fingerprint: r for r in st.label_records(include_weak=True)}
    # "mixin" is summed over the fleet (no instance): it cannot say which CoreDNS it was.
    assert set(records) == {"ours", "other"}
    assert (
        records["ours"].source == "verified" and records["ours"].anomaly_class == "upstream_latency"
    )
    other = records["other"]
    assert (other.source, other.verdict, other.instance, other.anomaly_class) == (
        "weak", "anomaly", "dns-b:53", "CoreDNSLatencyHigh",
    )  # fmt: skip
    assert other.start == datetime(2026, 11, 22, 1, 0, 0, 123456, tzinfo=timezone.utc)
    assert other.end == datetime(2026, 11, 22, 1, 20, tzinfo=timezone.utc)
    # A verdict on the fleet-wide alert is an engineer's word: it stays, for every instance.
    st.set_verdict("mixin", sa, "false_alarm")
    assert {r.fingerprint: r.instance for r in st.label_records()}["mixin"] == "*"
    st.set_verdict("mixin", sa, None)
    # The matchers choose which other rules may label (here: none but the latency one).
    picked = st.label_records(include_weak=True, weak_matchers='alertname="CoreDNSErrorsHigh"')
    assert {r.fingerprint for r in picked} == {"ours"}

    # Our own unlabelled alerts never become weak labels; engineers' verdicts on them do count.
    st.set_verdict("ours", sa, None)
    assert "ours" not in {r.fingerprint for r in st.label_records(include_weak=True)}
    assert [
        r.fingerprint for r in st.label_records(include_weak=True, alertname="CoreDNSLatencyHigh")
    ] == ["other"]
    assert st.label_records(include_weak=True, since="2026-11-22T02:00:00.000000Z") == []


def test_storage_failure_raises_store_error(st, tmp_path):
    st.store_delivery(delivery(alert("a")))
    st.close()
    for suffix in ("", "-wal", "-shm"):
        path = tmp_path / f"a.db{suffix}"
        if path.exists():
            path.unlink()
    (tmp_path / "a.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        st.store_delivery(delivery(alert("b")))


def test_refuses_a_newer_schema(tmp_path):
    path = str(tmp_path / "n.db")
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        AlertStore(path).init_schema()


def test_concurrent_writers_from_threads(st):
    def work(n):
        for i in range(40):
            st.store_delivery(delivery(alert(f"{n}-{i}"), group_key=f"g{n}"))
            st.store_delivery(delivery(alert(f"{n}-{i}"), group_key=f"g{n}"))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert st.conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 160


def test_ready(st):
    assert st.ready() is None


def test_since_key():
    now = datetime(2026, 11, 22, 3, tzinfo=timezone.utc)
    assert since_key("24h", now) == "2026-11-21T03:00:00.000000Z"
    assert since_key("7d", now) == "2026-11-15T03:00:00.000000Z"
    assert since_key("2026-11-22T01:00:00+01:00") == "2026-11-22T00:00:00.000000Z"
    assert since_key("all") == since_key("") == ""
    with pytest.raises(ValueError):
        since_key("last tuesday")


def test_annotations_merge_newest_wins(st):
    st.store_delivery(delivery(alert("a", annotations={"summary": "slow", "score": "1.5"})))
    st.store_delivery(
        delivery(
            alert(
                "a", status="resolved", ends_at="2026-11-22T02:00:00Z", annotations={"score": "0.4"}
            )
        )
    )
    (o,), _ = st.list_occurrences(AlertFilter())
    assert o.annotations == {"summary": "slow", "score": "0.4"}


def _count_commits(st, monkeypatch) -> list[str]:
    seen: list[str] = []
    original = st.connect

    def connect():
        conn = original()
        conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
        return conn

    monkeypatch.setattr(st, "connect", connect)
    return seen


def test_group_commit_one_transaction_for_queued_deliveries(st, monkeypatch):
    commits = _count_commits(st, monkeypatch)
    results = {}
    st._write_lock.acquire()  # a commit in progress: new deliveries queue up behind it
    threads = [
        threading.Thread(
            target=lambda n=n: results.update(
                {n: st.store_delivery(delivery(alert(f"q{n}"), group_key=f"q{n}"))}
            )
        )
        for n in range(3)
    ]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(st._pending) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    st._write_lock.release()
    for t in threads:
        t.join(10)
    assert sorted(results) == [0, 1, 2] and all(r.stored == 1 for r in results.values())
    assert len(commits) == 1  # three deliveries, one transaction, one fsync
    assert st.conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 3


def test_failed_group_commit_fails_every_delivery_in_it_and_recovers(st, monkeypatch):
    import coredns_anomaly.webhook.store as store_module

    real = store_module._insert_delivery
    calls = {"n": 0}

    def flaky(conn, d, now):
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return real(conn, d, now)

    monkeypatch.setattr(store_module, "_insert_delivery", flaky)
    with pytest.raises(StoreError, match="disk I/O"):
        st.store_delivery(delivery(alert("x")))
    assert st.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0] == 0
    assert st.store_delivery(delivery(alert("x"))).stored == 1
