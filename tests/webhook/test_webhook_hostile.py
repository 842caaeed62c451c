"""Hostile input to the webhook (issue 13), the fast part: no server process.

CSRF on /webhook (content type, Origin / Sec-Fetch-Site), poison deliveries that must fail
alone and with a 4xx, re-fires and updated annotations, CSV injection, private files and
directories, bounded filters, whitespace secrets, web-config parsing and its bcrypt users. The
same properties against the real gunicorn and Chromium: test_webhook_hostile_server.py and
test_webhook_browser.py.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from prometheus_client import REGISTRY
from webhook_testlib import BASIC, BEARER, alert, bcrypt_hash, make_cert, payload

from coredns_anomaly.webhook import receiver as receiver_module
from coredns_anomaly.webhook.auth import BcryptUsers, Credentials
from coredns_anomaly.webhook.config import (
    ConfigError,
    Settings,
    check_private_dir,
    load_settings,
)
from coredns_anomaly.webhook.labels import (
    LabelRecord,
    dumps_label_file,
    escape_cell,
    read_label_file,
    unescape_cell,
)
from coredns_anomaly.webhook.schema import parse_delivery
from coredns_anomaly.webhook.store import (
    AlertFilter,
    AlertStore,
    StoreError,
    UnstorableDelivery,
)
from coredns_anomaly.webhook.webconfig import load_web_config

JSON = {"Content-Type": "application/json"}


def delivery(*alerts, **kw):
    return parse_delivery(json.dumps(payload(*alerts, **kw)).encode())


def rejected(reason: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "coredns_anomaly_webhook_deliveries_rejected_total", {"reason": reason}
        )
        or 0.0
    )


def stored_deliveries(store) -> int:
    return store.conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]


# -- CSRF: only JSON, never cross-site ----------------------------------------------------------


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "",
    ],
)
def test_only_json_is_accepted(client, store, ctype):
    before = rejected("unsupported_media_type")
    r = client.post(
        "/webhook",
        data=json.dumps(payload(alert())),
        headers={**BEARER, "Content-Type": ctype},
    )
    assert r.status_code == 415, r.json
    assert stored_deliveries(store) == 0
    assert rejected("unsupported_media_type") == before + 1


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_with_parameters_or_other_case_is_json(client, ctype):
    r = client.post(
        "/webhook", data=json.dumps(payload(alert())), headers={**BEARER, "Content-Type": ctype}
    )
    assert r.status_code == 200


def test_the_text_plain_form_attack_stores_nothing(client, store):
    """What the auto-submitting form of issue 13 sends: a JSON-looking text/plain body, the
    browser's cached basic-auth login, the attacker page's Origin."""
    body = json.dumps(payload(alert("csrf", instance=None)))[:-1] + ', "x": "=' + '"}'
    r = client.post(
        "/webhook",
        data=body,
        headers={
            **BASIC,
            "Content-Type": "text/plain",
            "Origin": "http://127.0.0.2:8000",
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
        },
    )
    assert r.status_code == 403
    assert stored_deliveries(store) == 0


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        # Another port on the same host is "same-site" for a browser, and still another origin.
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://localhost:9999"}, 403),
        ({"Origin": "null"}, 403),
        ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, 200),
        ({"Sec-Fetch-Site": "none"}, 200),
        ({}, 200),  # Alertmanager, curl: neither header
    ],
)
def test_cross_site_posts_are_refused(client, store, headers, status):
    before = rejected("cross_site")
    r = client.post(
        "/webhook", data=json.dumps(payload(alert())), headers={**BASIC, **JSON, **headers}
    )
    assert r.status_code == status, r.json
    if status == 403:
        assert "cross-site" in r.json["error"] and stored_deliveries(store) == 0
        assert rejected("cross_site") == before + 1


def test_credentials_are_checked_first(client):
    r = client.post(
        "/webhook", data="x", headers={"Content-Type": "text/plain", "Origin": "http://evil"}
    )
    assert r.status_code == 401


# -- poison deliveries ---------------------------------------------------------------------------


def test_truncated_alerts_beyond_sqlite_is_a_400_not_a_503_loop(post, store):
    p = payload(alert())
    p["truncatedAlerts"] = 2**63
    r = post(p)
    assert r.status_code == 400 and "truncatedAlerts" in r.json["error"]
    p["truncatedAlerts"] = 2**63 - 1  # the largest SQLite holds: stored
    assert post(p).status_code == 200


def test_an_unstorable_delivery_is_422_so_alertmanager_drops_it(post, store, monkeypatch):
    """Should anything else pass the schema that SQLite cannot hold, the answer is a 4xx."""
    real = receiver_module.parse_delivery

    def poisoned(raw: bytes):
        return dataclasses.replace(real(raw), truncated_alerts=2**64)

    monkeypatch.setattr(receiver_module, "parse_delivery", poisoned)
    before = rejected("unstorable")
    r = post(payload(alert("poison")))
    assert r.status_code == 422 and "cannot be stored" in r.json["error"], r.json
    assert rejected("unstorable") == before + 1
    monkeypatch.setattr(receiver_module, "parse_delivery", real)
    assert post(payload(alert("good"))).status_code == 200


def _queue_behind_a_commit(st: AlertStore, deliveries: dict) -> dict:
    """Start one thread per delivery while a commit holds the lock: they form one group commit."""
    results: dict = {}

    def send(name, d):
        try:
            results[name] = st.store_delivery(d)
        except StoreError as exc:
            results[name] = exc

    st._write_lock.acquire()
    threads = [threading.Thread(target=send, args=item) for item in deliveries.items()]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(st._pending) < len(deliveries) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(st._pending) == len(deliveries)
    st._write_lock.release()
    for t in threads:
        t.join(10)
    return results


def test_a_poison_delivery_fails_alone_not_its_batch_mates(tmp_path):
    st = AlertStore(str(tmp_path / "p.db"))
    st.init_schema()
    good = {f"good{i}": delivery(alert(f"g{i}"), group_key=f"g{i}") for i in range(5)}
    poison = dataclasses.replace(delivery(alert("bad"), group_key="bad"), truncated_alerts=2**64)
    results = _queue_behind_a_commit(st, {**good, "poison": poison})
    assert isinstance(results["poison"], UnstorableDelivery)
    assert all(results[n].stored == 1 for n in good), results
    fingerprints = {r[0] for r in st.conn.execute("SELECT fingerprint FROM alerts")}
    assert fingerprints == {f"g{i}" for i in range(5)}


def test_a_database_failure_fails_the_batch_at_once_and_retryably(tmp_path, monkeypatch):
    """Disk or lock trouble is everyone's: no one-by-one retries, 503 for all (not 422)."""
    import coredns_anomaly.webhook.store as store_module

    st = AlertStore(str(tmp_path / "f.db"))
    st.init_schema()
    calls = {"n": 0}
    real = store_module._insert_delivery

    def failing(conn, d, now):
        calls["n"] += 1
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store_module, "_insert_delivery", failing)
    results = _queue_behind_a_commit(
        st, {f"d{i}": delivery(alert(f"d{i}"), group_key=f"d{i}") for i in range(3)}
    )
    assert calls["n"] == 1
    assert all(type(r) is StoreError for r in results.values()), results
    monkeypatch.setattr(store_module, "_insert_delivery", real)
    assert st.store_delivery(delivery(alert("d0"), group_key="d0")).stored == 1


# -- re-fires and updated annotations --------------------------------------------------------------


@pytest.fixture
def st(tmp_path) -> AlertStore:
    s = AlertStore(str(tmp_path / "a.db"))
    s.init_schema()
    return s


SA = "2026-11-22T01:00:00.123456Z"


def test_a_repeat_with_a_new_score_updates_the_stored_annotations(st):
    st.store_delivery(delivery(alert("a", annotations={"score": "1.10", "summary": "s"})))
    r = st.store_delivery(delivery(alert("a", annotations={"score": "2.50", "summary": "s"})))
    assert (r.stored, r.updated, r.duplicates, r.duplicate_delivery) == (0, 1, 0, False)
    assert st.get_occurrence("a", SA).annotations["score"] == "2.50"
    (stored,) = st.conn.execute("SELECT annotations FROM alerts").fetchone()
    assert json.loads(stored)["score"] == "2.50"
    again = st.store_delivery(delivery(alert("a", annotations={"score": "2.50", "summary": "s"})))
    assert (again.updated, again.duplicates) == (0, 1)


def test_a_refire_with_the_same_starts_at_after_a_resolve_is_stored(st):
    firing = delivery(alert("a"))
    st.store_delivery(firing)
    st.store_delivery(delivery(alert("a", status="resolved", ends_at="2026-11-22T01:30:00Z")))
    assert st.get_occurrence("a", SA).status == "resolved"
    # Alertmanager sends the very same body again: the alert fired again with its old startsAt.
    r = st.store_delivery(firing)
    assert (r.stored, r.refired) == (1, 1), r
    o = st.get_occurrence("a", SA)
    assert (o.status, o.ends_at) == ("firing", None)
    # ... and its second resolve is stored too, with its own end.
    r = st.store_delivery(delivery(alert("a", status="resolved", ends_at="2026-11-22T03:00:00Z")))
    assert r.stored == 1
    o = st.get_occurrence("a", SA)
    assert (o.status, o.ends_at) == ("resolved", "2026-11-22T03:00:00.000000Z")
    assert st.conn.execute("SELECT count(*) FROM alerts").fetchone()[0] == 4
    assert [r.end.hour for r in st.label_records(include_weak=True, own_alertnames="")] == [3]


def test_a_late_firing_after_its_resolve_is_not_a_refire(st):
    """Out of order (the resolve overtook it): the firing never preceded a resolve."""
    st.store_delivery(delivery(alert("a", status="resolved", ends_at="2026-11-22T01:30:00Z")))
    r = st.store_delivery(delivery(alert("a")))
    assert (r.stored, r.refired) == (1, 0)
    assert st.get_occurrence("a", SA).status == "resolved"


def test_schema_1_store_is_migrated(tmp_path):
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE deliveries (id INTEGER PRIMARY KEY, received_at TEXT NOT NULL,
            group_key TEXT NOT NULL, status TEXT NOT NULL, receiver TEXT NOT NULL,
            truncated_alerts INTEGER NOT NULL DEFAULT 0, body_sha256 TEXT NOT NULL UNIQUE,
            payload TEXT NOT NULL);
        CREATE TABLE alerts (id INTEGER PRIMARY KEY,
            delivery_id INTEGER NOT NULL REFERENCES deliveries(id), received_at TEXT NOT NULL,
            group_key TEXT NOT NULL, fingerprint TEXT NOT NULL, status TEXT NOT NULL,
            starts_at TEXT NOT NULL, ends_at TEXT, labels TEXT NOT NULL, annotations TEXT NOT NULL,
            generator_url TEXT NOT NULL, UNIQUE (group_key, fingerprint, status, starts_at));
        CREATE TABLE occurrences (fingerprint TEXT NOT NULL, starts_at TEXT NOT NULL,
            status TEXT NOT NULL, ends_at TEXT, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
            alertname TEXT NOT NULL, instance TEXT NOT NULL, severity TEXT NOT NULL,
            labels TEXT NOT NULL, annotations TEXT NOT NULL, generator_url TEXT NOT NULL,
            external_url TEXT NOT NULL, receiver TEXT NOT NULL,
            PRIMARY KEY (fingerprint, starts_at)) WITHOUT ROWID;
        INSERT INTO deliveries VALUES (1, 't', 'g', 'firing', 'r', 0, 'h1', '{}');
        INSERT INTO deliveries VALUES (2, 't', 'g', 'resolved', 'r', 0, 'h2', '{}');
        INSERT INTO alerts VALUES (1, 1, 't', 'g', 'fp', 'firing', 'S', NULL, '{}', '{}', '');
        INSERT INTO alerts VALUES (2, 2, 't', 'g', 'fp', 'resolved', 'S', 'E', '{}', '{}', '');
        INSERT INTO occurrences VALUES ('fp', 'S', 'resolved', 'E', 't', 't', 'A', 'i', '',
            '{}', '{}', '', '', 'r');
        PRAGMA user_version = 1;
        """
    )
    conn.close()
    st = AlertStore(str(path))
    st.init_schema()
    c = st.conn
    assert c.execute("PRAGMA user_version").fetchone()[0] == 2
    assert c.execute("SELECT id, status, generation FROM alerts ORDER BY id").fetchall() == [
        (1, "firing", 0),
        (2, "resolved", 0),
    ]
    assert c.execute("SELECT generation, firing_seen FROM occurrences").fetchone() == (0, 1)
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    st.init_schema()  # idempotent


# -- files and directories ---------------------------------------------------------------------


def test_database_files_are_created_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        st = AlertStore(str(tmp_path / "w.db"))
        st.init_schema()
        st.store_delivery(delivery(alert()))
    finally:
        os.umask(old)
    for suffix in ("", "-wal", "-shm", "-writelock"):
        mode = stat.S_IMODE(os.stat(tmp_path / f"w.db{suffix}").st_mode)
        assert mode == 0o600, (suffix, oct(mode))


def test_database_files_an_older_version_left_readable_are_narrowed(tmp_path):
    path = tmp_path / "old.db"
    AlertStore(str(path)).init_schema()
    held = sqlite3.connect(path)  # a live connection keeps -wal and -shm in place
    held.execute("SELECT 1 FROM meta").fetchall()
    try:
        for suffix in ("", "-wal", "-shm"):
            os.chmod(f"{path}{suffix}", 0o644)
        AlertStore(str(path)).init_schema()
        for suffix in ("", "-wal", "-shm"):
            assert stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode) == 0o600, suffix
    finally:
        held.close()


def test_an_unwritable_store_location_is_a_one_line_store_error():
    with pytest.raises(StoreError, match="cannot create /proc/"):
        AlertStore("/proc/webhook-test.db").init_schema()


def test_private_dir_is_created_0700(tmp_path):
    path = tmp_path / "a" / "metrics"
    check_private_dir(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    check_private_dir(str(path))  # ours and private: accepted again


@pytest.mark.parametrize("mode", [0o777, 0o755, 0o770, 0o701])
def test_private_dir_refuses_group_or_other_permissions(tmp_path, mode):
    path = tmp_path / "shared"
    path.mkdir()
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}.*refusing"):
        check_private_dir(str(path))


def test_private_dir_refuses_another_users_or_a_symlink(tmp_path):
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ConfigError, match="not a directory"):
        check_private_dir(str(tmp_path / "link"))
    if os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    os.chown(target, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534"):
        check_private_dir(str(target))


# -- the page's filter, CSV export -----------------------------------------------------------------


def test_alertname_filter_is_bounded(client, store):
    many = [alert(f"n{i}", alertname=f"Invented{i:05d}" + "x" * 40) for i in range(3000)]
    many += [alert(f"top{i}", alertname="CoreDNSAnomaly") for i in range(3)]
    store.store_delivery(delivery(*many))
    r = client.get("/alerts?since=all", headers=BASIC)
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    datalist = page.split('<datalist id="alertnames">', 1)[1].split("</datalist>", 1)[0]
    assert datalist.count("<option") == 50
    assert 'value="CoreDNSAnomaly"' in datalist  # the most frequent first
    assert len(page) < 300_000, len(page)  # 100 rows of alerts, not 3,000 names
    filtered = client.get("/alerts?since=all&alertname=Invented02999" + "x" * 40, headers=BASIC)
    assert filtered.get_data(as_text=True).count('class="alert ') == 1


def test_labels_are_served_as_an_attachment(client):
    r = client.get("/labels", headers=BASIC)
    assert r.headers["Content-Disposition"].startswith("attachment;")


def _record(**kw) -> LabelRecord:
    from datetime import datetime, timezone

    base = dict(
        instance="10.0.0.1:9153",
        start=datetime(2026, 1, 1, tzinfo=timezone.utc),
        end=datetime(2026, 1, 1, 1, tzinfo=timezone.utc),
        verdict="anomaly",
        source="weak",
        alertname="A",
        fingerprint="f",
        comment="",
    )
    return LabelRecord(**{**base, **kw})


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped():
    text = dumps_label_file(
        [
            _record(
                alertname='=HYPERLINK("http://evil","x")',
                instance="+cmd|' /C calc'!A0",
                fingerprint="@SUM(1)",
                comment="-2+3",
            ),
            _record(comment="\tfoo"),
            _record(comment="\rbar"),
            _record(comment="'=already quoted"),
        ]
    )
    rows = list(csv.reader(io.StringIO(text)))[1:]
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), row
    assert rows[0][6] == '\'=HYPERLINK("http://evil","x")'
    back = read_label_file(io.StringIO(text))
    assert [r.comment for r in back] == ["-2+3", "\tfoo", "\rbar", "'=already quoted"]
    assert back[0].alertname == '=HYPERLINK("http://evil","x")'
    assert back[0].instance == "+cmd|' /C calc'!A0"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hs.text(min_size=1, max_size=20).filter(lambda s: s.strip() and s == s.strip()))
def test_csv_escaping_round_trips(text):
    assert unescape_cell(escape_cell(text)) == text
    back = read_label_file(io.StringIO(dumps_label_file([_record(comment=text, alertname=text)])))
    assert (back[0].comment, back[0].alertname) == (text, text)


# -- secrets and --check -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["   ", "\t\n"])
def test_whitespace_only_password_from_the_environment_is_refused(value):
    env = {
        "COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_USERNAME": "oncall",
        "COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_PASSWORD": value,
    }
    with pytest.raises(ConfigError, match="empty or only whitespace"):
        load_settings(env=env)
    with pytest.raises(ConfigError, match="empty or only whitespace"):
        load_settings(env={"COREDNS_ANOMALY_WEBHOOK_BEARER_TOKEN": value})


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("COREDNS_ANOMALY_WEBHOOK_")}
    base.pop("PROMETHEUS_MULTIPROC_DIR", None)
    code = "import sys; from coredns_anomaly.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, "webhook", "serve", "--check", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_check_with_an_unwritable_directory_is_one_line(tmp_path):
    r = _cli("--db", "/proc/webhook-test.db", "--allow-unauthenticated")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot open the alert store" in r.stderr


def test_check_refuses_a_shared_metrics_dir_and_whitespace_password(tmp_path):
    shared = tmp_path / "m"
    shared.mkdir()
    os.chmod(shared, 0o777)
    r = _cli(
        "--db", str(tmp_path / "w.db"), "--allow-unauthenticated", "--metrics-dir", str(shared)
    )
    assert r.returncode == 2 and "refusing it" in r.stderr and "Traceback" not in r.stderr
    r = _cli(
        "--db",
        str(tmp_path / "w.db"),
        "--basic-auth-username",
        "oncall",
        env={"COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_PASSWORD": "  "},
    )
    assert r.returncode == 2 and "only whitespace" in r.stderr


# -- web config --------------------------------------------------------------------------------


def test_web_config_tls_and_users(tmp_path):
    make_cert(tmp_path)
    (tmp_path / "web.yml").write_text(
        "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_version: TLS13\n"
        f"basic_auth_users:\n  alice: '{bcrypt_hash(b'pw')}'\n"
    )
    web = load_web_config(str(tmp_path / "web.yml"))
    assert web.tls is not None and web.tls.cert_file == str(tmp_path / "tls.crt")  # relative
    assert web.tls.context().minimum_version.name == "TLSv1_3"
    assert set(web.basic_auth_users) == {"alice"}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("tls_server_config:\n  cert_file: a.crt\n", "needs both cert_file and key_file"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n", "cannot load the TLS files"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n",
            "unsupported key(s) cipher_suites",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequestClientCert\n",
            "not supported",
        ),
        ("http_server_config:\n  http2: false\n", "unsupported key(s) http_server_config"),
        ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
        ("basic_auth_users: [alice]\n", "must be a mapping"),
        ("tls_server_config: [\n", "not valid YAML"),
        ("- a\n", "expected a mapping"),
    ],
)
def test_web_config_errors_are_one_line(tmp_path, text, needle):
    (tmp_path / "web.yml").write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_web_config(str(tmp_path / "web.yml"))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_web_config_users_authenticate_next_to_the_webhooks_own(tmp_path):
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  alice: '{bcrypt_hash(b'pw')}'\n")
    creds = Credentials.from_settings(
        Settings(db="x", bearer_token="tok", web_config_file=str(tmp_path / "web.yml"))
    )
    import base64

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert creds.check("Bearer tok") == "bearer"
    assert creds.check(basic("alice", "pw")) == "basic:alice"
    assert creds.check(basic("alice", "nope")) is None
    assert creds.check(basic("mallory", "pw")) is None
    assert creds.challenge().startswith("Basic")
    # Users only, no token: still not open (auth stays mandatory).
    only_users = Credentials.from_settings(
        Settings(db="x", web_config_file=str(tmp_path / "web.yml"))
    )
    assert not only_users.open


def test_bcrypt_success_is_cached_failures_are_not(monkeypatch):
    import bcrypt

    users = BcryptUsers({"alice": bcrypt_hash(b"pw").encode()})
    assert users.check(b"alice", b"pw") == "alice"
    calls = {"n": 0}
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls["n"] += 1
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    assert users.check(b"alice", b"pw") == "alice"
    assert calls["n"] == 0  # cached: Alertmanager's password costs bcrypt once per worker
    assert users.check(b"alice", b"wrong") is None
    assert users.check(b"bob", b"pw") is None  # unknown user: a bcrypt check all the same
    assert calls["n"] == 2


def test_occurrence_filter_still_works_after_refire(st):
    st.store_delivery(delivery(alert("a")))
    st.store_delivery(delivery(alert("a", status="resolved", ends_at="2026-11-22T01:30:00Z")))
    st.store_delivery(delivery(alert("a")))
    assert [o.fingerprint for o in st.list_occurrences(AlertFilter(status="firing"))[0]] == ["a"]
