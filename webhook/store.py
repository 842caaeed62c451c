"""The alert store: SQLite in WAL mode with synchronous=FULL, so a commit is on disk before 2xx.

Alertmanager delivers at least once, so writes are idempotent: an alert row is unique on
(groupKey, fingerprint, status, startsAt) and a delivery on the hash of its canonical JSON;
repeats are acknowledged and counted, never stored twice. ``occurrences`` folds the firing and
resolved notifications of one alert (fingerprint, startsAt) into the row the page shows and
engineers label. One connection per process and thread. Writers queue on a blocking flock()
of a side file (released by the kernel even on kill -9) instead of SQLite's busy handler, whose
sleeps of 1, 2, 5, 10... ms would dominate latency with several gunicorn workers.

Hostile or broken input (issue 13): a delivery that can never be stored (a value SQLite cannot
hold) fails alone, as :class:`UnstorableDelivery` (the receiver answers 422, so Alertmanager
drops it instead of retrying forever), and never the other deliveries of its group commit. The
database and its side files are created 0600: they hold every payload and the page's signing
secret.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from coredns_anomaly.contracts.names import OWN_ALERTNAMES, VERDICT_ANOMALY, VERDICTS
from coredns_anomaly.webhook.coop import Offload, native_local_class
from coredns_anomaly.webhook.labels import ALL_INSTANCES, CLASS_RE, LabelRecord, class_of_alert
from coredns_anomaly.webhook.matchers import DEFAULT_WEAK_MATCHERS, match_all, parse_matchers
from coredns_anomaly.webhook.schema import Alert, Delivery
from coredns_anomaly.webhook.timefmt import parse_rfc3339, storage_key, utcnow

SCHEMA_VERSION = 2
log = logging.getLogger("coredns_anomaly.webhook")

_ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    received_at TEXT NOT NULL,
    group_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    ends_at TEXT,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    -- 0, then +1 per re-fire of the same (fingerprint, startsAt) after a resolve
    generation INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_key, fingerprint, status, starts_at, generation)
)
"""

_DDL = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,
    receiver TEXT NOT NULL,
    truncated_alerts INTEGER NOT NULL DEFAULT 0,
    body_sha256 TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL
);
{alerts};
CREATE TABLE IF NOT EXISTS occurrences (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    status TEXT NOT NULL,
    ends_at TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    alertname TEXT NOT NULL,
    instance TEXT NOT NULL,
    severity TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    generator_url TEXT NOT NULL,
    external_url TEXT NOT NULL,
    receiver TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    -- a firing notification was stored in this generation (so a later one is a re-fire)
    firing_seen INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (fingerprint, starts_at)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS occurrences_by_start ON occurrences (starts_at DESC);
CREATE INDEX IF NOT EXISTS occurrences_by_alertname ON occurrences (alertname);
CREATE TABLE IF NOT EXISTS verdicts (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    class TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS verdict_log (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    verdict TEXT,
    class TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS range_labels (
    id INTEGER PRIMARY KEY,
    instance TEXT NOT NULL,
    start TEXT NOT NULL,
    end_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    class TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS range_labels_by_instance ON range_labels (instance, start);
""".replace("{alerts}", _ALERTS_DDL)

_UPSERT_OCCURRENCE = """
INSERT INTO occurrences (fingerprint, starts_at, status, ends_at, first_seen, last_seen,
    alertname, instance, severity, labels, annotations, generator_url, external_url, receiver,
    generation, firing_seen)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
    status = CASE WHEN occurrences.status = 'resolved' OR excluded.status = 'resolved'
                  THEN 'resolved' ELSE 'firing' END,
    ends_at = COALESCE(excluded.ends_at, occurrences.ends_at),
    first_seen = min(occurrences.first_seen, excluded.first_seen),
    last_seen = max(occurrences.last_seen, excluded.last_seen),
    annotations = CASE WHEN excluded.last_seen >= occurrences.last_seen
                       THEN json_patch(occurrences.annotations, excluded.annotations)
                       ELSE json_patch(excluded.annotations, occurrences.annotations) END,
    generator_url = CASE WHEN excluded.generator_url != '' THEN excluded.generator_url
                         ELSE occurrences.generator_url END,
    firing_seen = max(occurrences.firing_seen, excluded.firing_seen)
"""

# A firing notification after the resolve of a generation that had fired: the alert fired again
# with the same startsAt (Prometheus keeps ActiveAt when an alert resolved only because its
# endsAt lapsed, e.g. while Alertmanager could not reach it). Open a new generation.
_REOPEN_OCCURRENCE = """
UPDATE occurrences SET status = 'firing', ends_at = NULL, generation = ?, firing_seen = 1,
    last_seen = max(last_seen, ?), annotations = json_patch(annotations, ?),
    generator_url = CASE WHEN ? != '' THEN ? ELSE generator_url END
WHERE fingerprint = ? AND starts_at = ?
"""

# Schema 1 -> 2: alerts get a generation (part of their key), occurrences track it.
_MIGRATE_1_TO_2 = """
ALTER TABLE occurrences ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE occurrences ADD COLUMN firing_seen INTEGER NOT NULL DEFAULT 0;
UPDATE occurrences SET firing_seen = EXISTS (SELECT 1 FROM alerts a
    WHERE a.fingerprint = occurrences.fingerprint AND a.starts_at = occurrences.starts_at
    AND a.status = 'firing');
ALTER TABLE alerts RENAME TO alerts_v1;
{alerts_ddl};
INSERT INTO alerts (id, delivery_id, received_at, group_key, fingerprint, status, starts_at,
    ends_at, labels, annotations, generator_url, generation)
SELECT id, delivery_id, received_at, group_key, fingerprint, status, starts_at, ends_at, labels,
    annotations, generator_url, 0 FROM alerts_v1;
DROP TABLE alerts_v1
""".replace("{alerts_ddl}", _ALERTS_DDL)

# Errors that say the database or disk is in trouble, for every delivery alike: answered 503 at
# once (Alertmanager retries). Anything else may be the fault of one delivery's data, so a failed
# group commit is retried one delivery at a time to find it.
_TRANSIENT = (sqlite3.OperationalError, OSError)
# What a delivery's own data can raise when it alone is written: it will never be stored.
_UNSTORABLE = (OverflowError, ValueError, sqlite3.DataError, sqlite3.IntegrityError)


class StoreError(Exception):
    """The store could not commit; the receiver answers 5xx so Alertmanager retries."""


class UnstorableDelivery(StoreError):
    """This delivery, written alone, fails on its own data: retrying can never succeed.

    The receiver answers 422 so Alertmanager drops it rather than retrying it forever.
    """


@dataclass(frozen=True)
class StoreResult:
    delivery_id: int
    stored: int  # alert rows newly stored (new alerts, resolves, re-fires)
    duplicates: int  # alerts already stored exactly so
    duplicate_delivery: bool  # the very same delivery (canonical JSON) was stored before
    updated: int = 0  # repeats whose annotations changed: stored annotations updated
    refired: int = 0  # of ``stored``: firing again after their resolve, same startsAt
    stored_by_status: tuple[tuple[str, int], ...] = ()


@dataclass
class _Job:
    """One delivery waiting for a group commit."""

    delivery: Delivery
    received_at: str
    result: StoreResult | None = None
    error: Exception | None = None
    alone: bool = False  # the error came from a transaction holding only this delivery
    done: bool = False


@dataclass(frozen=True)
class Occurrence:
    """One alert (fingerprint, startsAt) as the page shows it, with its verdict if any."""

    fingerprint: str
    starts_at: str
    status: str
    ends_at: str | None
    last_seen: str
    alertname: str
    instance: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    generator_url: str
    external_url: str
    verdict: str | None
    verdict_class: str
    verdict_comment: str
    verdict_author: str
    verdict_at: str | None


@dataclass(frozen=True)
class AlertFilter:
    status: str = ""  # firing | resolved | "" (all)
    alertname: str = ""
    instance: str = ""  # substring
    verdict: str = ""  # none | anomaly | false_alarm | labelled | "" (all)
    since: str = ""  # storage_key; occurrences active at or after this
    limit: int = 100
    offset: int = 0


class AlertStore:
    def __init__(self, path: str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        # Per OS thread, also under gevent (coop.py says why).
        self._local = native_local_class()()
        self._write_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Job] = []
        self._pid = os.getpid()
        self._lock_fd: int | None = None
        # Group commits run here: on a native thread under gevent, so an fsync never stalls the
        # event loop that serves every other connection of the worker.
        self._offload = Offload(1)
        # Log records made on the offload thread, emitted by the caller: under gevent the
        # logging handlers' locks are greenlet locks, not to be taken from a native thread.
        self._logs: list[tuple[int, str, tuple[Any, ...], Any]] = []

    # -- connections -------------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=True,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _check_fork(self) -> None:
        """A forked child never reuses its parent's connections, locks or lock file."""
        if self._pid != os.getpid():
            self._local = native_local_class()()
            self._write_lock = threading.Lock()
            self._pending_lock = threading.Lock()
            self._pending = []
            self._lock_fd = None  # flock is per open file description: never share the parent's
            self._pid = os.getpid()

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's connection."""
        self._check_fork()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _process_lock_fd(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(
                f"{self.path}-writelock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        return self._lock_fd

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._check_fork()
        conn = self.conn
        with self._write_lock:
            fd = self._process_lock_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def init_schema(self) -> None:
        """Create, migrate or check the schema; safe to call from every process at start.

        Raises StoreError with a one-line message for anything the operator must fix (an
        unwritable directory, a file that is not a database, a newer schema).
        """
        self._secure_files()
        try:
            conn = self.connect()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this webhook's {SCHEMA_VERSION}"
                )
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have
            if version == 1:
                for statement in _MIGRATE_1_TO_2.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                log.info("%s: migrated the alert store from schema 1 to 2", self.path)
            for statement in _DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('secret', ?)",
                (secrets.token_hex(32),),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        finally:
            conn.close()
        self._secure_files()  # -wal and -shm now exist; an older version may have made them 0644

    def _secure_files(self) -> None:
        """Create the database 0600 before SQLite first writes it, and tighten older files.

        SQLite gives -wal and -shm the database file's permissions, so creating the database
        0600 (whatever the umask) keeps payloads and the signing secret private. Files this
        webhook created 0644 before are narrowed to 0600 (only if we own them).
        """
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"cannot create {self.path}: {exc.strerror}") from None
        else:
            os.close(fd)
        for suffix in ("", "-wal", "-shm", "-writelock"):
            path = self.path + suffix
            try:
                st = os.stat(path)
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
                    os.chmod(path, 0o600)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot secure {path}: {exc.strerror}") from None

    # -- receiving ---------------------------------------------------------------------------

    def store_delivery(
        self, delivery: Delivery, received_at: datetime | None = None
    ) -> StoreResult:
        """Commit a delivery and its alerts durably; raises StoreError on any storage failure.

        Group commit: concurrent calls in this process share one transaction, so one fsync
        covers several deliveries; each call still returns only after the commit that holds
        its rows. The first caller to get the write lock commits everything queued by then.
        """
        self._check_fork()
        job = _Job(delivery, storage_key(received_at or utcnow()))
        with self._pending_lock:
            self._pending.append(job)
        with self._write_lock:
            if not job.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                try:
                    self._offload(self._commit_batch, batch)
                finally:
                    logs, self._logs = self._logs, []
                    for level, msg, args, exc_info in logs:
                        log.log(level, msg, *args, exc_info=exc_info)
        if job.error is not None:
            if job.alone and isinstance(job.error, _UNSTORABLE):
                raise UnstorableDelivery(f"{type(job.error).__name__}: {job.error}") from job.error
            raise StoreError(str(job.error)) from job.error
        assert job.result is not None
        return job.result

    def _commit_batch(self, batch: list[_Job]) -> None:
        """Write a batch in one transaction (caller holds _write_lock); mark every job done.

        If the transaction fails for a reason that is not the database's (see _TRANSIENT), one
        delivery's data may be at fault: each is then written in its own transaction, so only
        that one fails and its batch-mates are stored and acknowledged.
        """
        try:
            results = self._transaction(batch)
        except Exception as exc:
            if len(batch) > 1 and not isinstance(exc, _TRANSIENT):
                self._logs.append(
                    (
                        logging.WARNING,
                        "a group commit of %d deliveries failed (%s: %s); writing them one by one",
                        (len(batch), type(exc).__name__, exc),
                        None,
                    )
                )
                for job in batch:
                    self._commit_batch([job])
                return
            for job in batch:
                job.error, job.alone, job.done = exc, len(batch) == 1, True
            return
        for job, result in zip(batch, results, strict=True):
            job.result, job.done = result, True

    def _transaction(self, batch: list[_Job]) -> list[StoreResult]:
        """One transaction for the batch, under the cross-process write lock; raises on failure."""
        try:
            conn = self.conn
            fd = self._process_lock_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    results = [
                        _insert_delivery(conn, job.delivery, job.received_at) for job in batch
                    ]
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except Exception as exc:
            if not isinstance(exc, (sqlite3.Error, *_UNSTORABLE)):
                self._logs.append(
                    (
                        logging.ERROR,
                        "unexpected error while storing %d deliveries",
                        (len(batch),),
                        (type(exc), exc, exc.__traceback__),
                    )
                )
            self._discard_broken_connection()
            raise
        return results

    def _discard_broken_connection(self) -> None:
        # After an I/O error a connection may be left mid-transaction; start afresh next time.
        try:
            self.close()
        except sqlite3.Error:
            self._local.conn = None

    def ready(self) -> str | None:
        """None when the store answers queries and its directory is writable, else the problem."""
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._discard_broken_connection()
            return f"database not readable: {exc}"
        if version != SCHEMA_VERSION:
            return f"database schema version {version}, expected {SCHEMA_VERSION}"
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.access(directory, os.W_OK) or not os.access(self.path, os.W_OK):
            return f"database {self.path} is not writable"
        return None

    def secret(self) -> bytes:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
        if row is None:
            raise StoreError("store has no secret; init_schema() was not run")
        return bytes.fromhex(row[0])

    # -- the page ------------------------------------------------------------------------------

    def list_occurrences(self, f: AlertFilter) -> tuple[list[Occurrence], int]:
        """A page of occurrences (newest first) matching f, and the total that match."""
        where, params = _where(f)
        total = self.conn.execute(
            f"SELECT count(*) FROM occurrences o LEFT JOIN verdicts v USING (fingerprint, starts_at) {where}",
            params,
        ).fetchone()[0]
        rows = self.conn.execute(
            f"{_SELECT_OCCURRENCES} {where} ORDER BY o.starts_at DESC, o.fingerprint LIMIT ? OFFSET ?",
            [*params, max(1, min(f.limit, 1000)), max(0, f.offset)],
        ).fetchall()
        return [_occurrence(r) for r in rows], total

    def get_occurrence(self, fingerprint: str, starts_at: str) -> Occurrence | None:
        row = self.conn.execute(
            f"{_SELECT_OCCURRENCES} WHERE o.fingerprint = ? AND o.starts_at = ?",
            (fingerprint, starts_at),
        ).fetchone()
        return _occurrence(row) if row else None

    def facets(self, max_alertnames: int = 50) -> dict[str, list[str]]:
        """The most frequent alert names and the anomaly classes, for the page's suggestions.

        Bounded: any sender can invent alert names, and a list of all of them made a 7.9 MB page
        at 30,000 names; the page offers these as suggestions for a free-text filter.
        """
        names = [
            r[0]
            for r in self.conn.execute(
                "SELECT alertname FROM occurrences GROUP BY alertname"
                " ORDER BY count(*) DESC, alertname LIMIT ?",
                (max_alertnames,),
            )
        ]
        classes = [
            r[0]
            for r in self.conn.execute(
                "SELECT DISTINCT class FROM verdicts WHERE class != '' ORDER BY 1 LIMIT 200"
            )
        ]
        return {"alertnames": names, "classes": classes}

    def counts(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT (SELECT count(*) FROM occurrences),"
            " (SELECT count(*) FROM occurrences WHERE status = 'firing'),"
            " (SELECT count(*) FROM verdicts),"
            " (SELECT count(*) FROM deliveries)"
        ).fetchone()
        return {"alerts": row[0], "firing": row[1], "verdicts": row[2], "deliveries": row[3]}

    def notifications(self) -> list[dict[str, Any]]:
        """Every alert notification stored, in arrival order: when it was received, its status,
        labels and startsAt (the loop times each delivery from these)."""
        rows = self.conn.execute(
            "SELECT received_at, status, labels, starts_at FROM alerts ORDER BY id"
        ).fetchall()
        return [
            {"received_at": r[0], "status": r[1], "labels": json.loads(r[2]), "starts_at": r[3]}
            for r in rows
        ]

    def set_verdict(
        self,
        fingerprint: str,
        starts_at: str,
        verdict: str | None,
        anomaly_class: str = "",
        comment: str = "",
        author: str = "",
    ) -> bool:
        """Record (or, with verdict None, clear) an engineer's verdict; False if no such alert."""
        if verdict is not None and verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        anomaly_class = anomaly_class.strip() if verdict == VERDICT_ANOMALY else ""
        if anomaly_class and not CLASS_RE.match(anomaly_class):
            raise ValueError(f"{anomaly_class!r} is not a class name (letters, digits, _ . : -)")
        now = storage_key(utcnow())
        with self._write() as conn:
            exists = conn.execute(
                "SELECT 1 FROM occurrences WHERE fingerprint = ? AND starts_at = ?",
                (fingerprint, starts_at),
            ).fetchone()
            if not exists:
                return False
            if verdict is None:
                conn.execute(
                    "DELETE FROM verdicts WHERE fingerprint = ? AND starts_at = ?",
                    (fingerprint, starts_at),
                )
            else:
                conn.execute(
                    "INSERT INTO verdicts (fingerprint, starts_at, verdict, class, comment, author,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint, starts_at)"
                    " DO UPDATE SET verdict = excluded.verdict, class = excluded.class,"
                    " comment = excluded.comment, author = excluded.author, updated_at = excluded.updated_at",
                    (fingerprint, starts_at, verdict, anomaly_class, comment, author, now),
                )
            conn.execute(
                "INSERT INTO verdict_log (fingerprint, starts_at, verdict, class, comment, author, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (fingerprint, starts_at, verdict, anomaly_class, comment, author, now),
            )
        return True

    # -- ranges marked on the chart -------------------------------------------------------------

    def add_range_label(
        self,
        instance: str,
        start: datetime,
        end: datetime,
        verdict: str,
        anomaly_class: str = "",
        comment: str = "",
        author: str = "",
    ) -> int:
        """An engineer's label of a time range of one instance, marked on its chart: an anomaly
        (of a class, one of the model's or a new name), perhaps one no alert caught, or
        `false_alarm` (normal). ValueError says what is wrong; returns the label's id."""
        instance = instance.strip()
        if not instance or len(instance) > MAX_RANGE_INSTANCE or instance == ALL_INSTANCES:
            raise ValueError("instance must name one CoreDNS target (at most 256 characters)")
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}: anomaly or false_alarm (normal)")
        if not end > start:
            raise ValueError("the range must end after it starts")
        if end - start > MAX_RANGE:
            raise ValueError(f"a range spans at most {MAX_RANGE.days} days")
        anomaly_class = anomaly_class.strip() if verdict == VERDICT_ANOMALY else ""
        if anomaly_class and not CLASS_RE.match(anomaly_class):
            raise ValueError(f"{anomaly_class!r} is not a class name (letters, digits, _ . : -)")
        if len(comment) > MAX_RANGE_COMMENT:
            raise ValueError(f"the comment is longer than {MAX_RANGE_COMMENT} characters")
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO range_labels (instance, start, end_at, verdict, class, comment,"
                " author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    instance, storage_key(start), storage_key(end), verdict, anomaly_class,
                    comment, author, storage_key(utcnow()),
                ),
            )  # fmt: skip
            return int(cur.lastrowid)

    def delete_range_label(self, label_id: int) -> bool:
        with self._write() as conn:
            return conn.execute("DELETE FROM range_labels WHERE id = ?", (label_id,)).rowcount > 0

    def range_labels(
        self, instance: str = "", since: str = "", until: str = "", limit: int = 10_000
    ) -> list[RangeLabel]:
        """Marked ranges (of one instance, overlapping [since, until] storage keys), oldest first."""
        where, params = _where_given(
            ("instance = ?", instance), ("end_at >= ?", since), ("start <= ?", until)
        )
        rows = self.conn.execute(
            "SELECT id, instance, start, end_at, verdict, class, comment, author FROM range_labels"
            f" {where} ORDER BY start, id LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [RangeLabel(*r) for r in rows]

    # -- label export --------------------------------------------------------------------------

    def label_records(
        self,
        *,
        include_weak: bool = False,
        own_alertnames: str = OWN_ALERTNAMES,
        weak_matchers: str = DEFAULT_WEAK_MATCHERS,
        alertname: str = "",
        since: str = "",
        until: str = "",
    ) -> list[LabelRecord]:
        """Verdicts as label records; with include_weak, also unlabelled alerts of other rules.

        Weak labels come from alerts that no engineer has judged, fired by rules that are not
        ours (``own_alertnames`` regex: the model's own alerts would only teach it itself),
        that ``weak_matchers`` select (default: the CoreDNS mixin's alerts; kube-prometheus'
        always-firing Watchdog is not about CoreDNS) and that name an ``instance``: an alert
        aggregated over the fleet cannot say which CoreDNS was anomalous, and labelling every
        one would teach the model that the healthy ones were not. The alert name is the weak
        label's class. An alert still firing ends at the last time it was seen.
        """
        selects = parse_matchers(weak_matchers)
        where, params = _where_given(
            ("o.alertname = ?", alertname),
            ("COALESCE(o.ends_at, o.last_seen) >= ?", since),
            ("o.starts_at <= ?", until),
            always=() if include_weak else ("v.verdict IS NOT NULL",),
        )
        rows = self.conn.execute(
            f"{_SELECT_OCCURRENCES} {where} ORDER BY o.starts_at, o.fingerprint", params
        ).fetchall()
        own = re.compile(own_alertnames) if own_alertnames else None
        records = []
        for r in rows:
            occ = _occurrence(r)
            if occ.verdict is None and not (
                (own is None or not own.search(occ.alertname))
                and occ.instance
                and match_all(selects, {**occ.labels, "alertname": occ.alertname})
            ):
                continue
            records.append(_label_record(occ))
        if not alertname:  # ranges marked on a chart belong to no alert
            for m in self.range_labels(since=since, until=until, limit=1_000_000):
                records.append(m.record())
        return records


def _insert_delivery(conn: sqlite3.Connection, delivery: Delivery, now: str) -> StoreResult:
    """Write one delivery and fold its alerts into occurrences (inside the caller's transaction).

    Per alert, against what is stored for its (fingerprint, startsAt):

    * new, or a status not seen yet in this generation (the resolve): stored;
    * firing while the occurrence is resolved after having fired: a re-fire, stored in a new
      generation and the occurrence reopened (a firing that arrives after a resolve it never
      preceded is a late notification and folds into the resolved occurrence instead);
    * already stored, in a new delivery, with other annotations (e.g. a new score): the stored
      annotations are updated (counted as ``updated``, not as a duplicate);
    * otherwise a duplicate (a firing repeat still moves ``last_seen``).
    """
    cur = conn.execute(
        "INSERT OR IGNORE INTO deliveries (received_at, group_key, status, receiver,"
        " truncated_alerts, body_sha256, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            now,
            delivery.group_key,
            delivery.status,
            delivery.receiver,
            delivery.truncated_alerts,
            delivery.body_sha256,
            delivery.raw,
        ),
    )
    duplicate_delivery = cur.rowcount == 0
    if duplicate_delivery:
        delivery_id = conn.execute(
            "SELECT id FROM deliveries WHERE body_sha256 = ?", (delivery.body_sha256,)
        ).fetchone()[0]
    else:
        delivery_id = cur.lastrowid
    stored: dict[str, int] = {}
    updated = refired = duplicates = 0
    for a in delivery.alerts:
        labels = json.dumps(a.labels, ensure_ascii=False, sort_keys=True)
        annotations = json.dumps(a.annotations, ensure_ascii=False, sort_keys=True)
        occ = conn.execute(
            "SELECT status, generation, firing_seen FROM occurrences"
            " WHERE fingerprint = ? AND starts_at = ?",
            (a.fingerprint, a.starts_at),
        ).fetchone()
        generation = occ[1] if occ else 0
        refire = occ is not None and occ[0] == "resolved" and a.status == "firing" and occ[2] == 1
        if refire:
            generation += 1
        cur = conn.execute(
            "INSERT OR IGNORE INTO alerts (delivery_id, received_at, group_key, fingerprint,"
            " status, starts_at, ends_at, labels, annotations, generator_url, generation)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                delivery_id,
                now,
                delivery.group_key,
                a.fingerprint,
                a.status,
                a.starts_at,
                a.ends_at,
                labels,
                annotations,
                a.generator_url,
                generation,
            ),
        )
        if cur.rowcount:
            stored[a.status] = stored.get(a.status, 0) + 1
            if refire:
                refired += 1
                conn.execute(
                    _REOPEN_OCCURRENCE,
                    (
                        generation,
                        now,
                        annotations,
                        a.generator_url,
                        a.generator_url,
                        a.fingerprint,
                        a.starts_at,
                    ),
                )
            else:
                _upsert_occurrence(conn, delivery, a, now, labels, annotations, generation)
            continue
        if duplicate_delivery:
            duplicates += 1
            continue
        row = conn.execute(
            "SELECT id, annotations FROM alerts WHERE group_key = ? AND fingerprint = ?"
            " AND status = ? AND starts_at = ? AND generation = ?",
            (delivery.group_key, a.fingerprint, a.status, a.starts_at, generation),
        ).fetchone()
        if row is not None and row[1] != annotations:
            updated += 1
            conn.execute("UPDATE alerts SET annotations = ? WHERE id = ?", (annotations, row[0]))
            _upsert_occurrence(conn, delivery, a, now, labels, annotations, generation)
            continue
        duplicates += 1
        if a.status == "firing":
            conn.execute(
                "UPDATE occurrences SET last_seen = max(last_seen, ?)"
                " WHERE fingerprint = ? AND starts_at = ? AND status = 'firing'",
                (now, a.fingerprint, a.starts_at),
            )
    return StoreResult(
        delivery_id=delivery_id,
        stored=sum(stored.values()),
        duplicates=duplicates,
        duplicate_delivery=duplicate_delivery and not stored,
        updated=updated,
        refired=refired,
        stored_by_status=tuple(sorted(stored.items())),
    )


def _upsert_occurrence(
    conn: sqlite3.Connection,
    delivery: Delivery,
    a: Alert,
    now: str,
    labels: str,
    annotations: str,
    generation: int,
) -> None:
    conn.execute(
        _UPSERT_OCCURRENCE,
        (
            a.fingerprint,
            a.starts_at,
            a.status,
            a.ends_at,
            now,
            now,
            a.labels.get("alertname", ""),
            a.labels.get("instance", ""),
            a.labels.get("severity", ""),
            labels,
            annotations,
            a.generator_url,
            delivery.external_url,
            delivery.receiver,
            generation,
            1 if a.status == "firing" else 0,
        ),
    )


_SELECT_OCCURRENCES = """
SELECT o.fingerprint, o.starts_at, o.status, o.ends_at, o.last_seen, o.alertname, o.instance,
       o.severity, o.labels, o.annotations, o.generator_url, o.external_url,
       v.verdict, v.class, v.comment, v.author, v.updated_at
FROM occurrences o LEFT JOIN verdicts v USING (fingerprint, starts_at)
"""


def _where_given(
    *conditions: tuple[str, Any], always: tuple[str, ...] = ()
) -> tuple[str, list[Any]]:
    """A WHERE clause of the `always` conditions and of each (`sql ?`, value) whose value is
    given (not empty), with its parameters; "" when there are none."""
    given = [(sql, v) for sql, v in conditions if v]
    clauses = [*always, *(sql for sql, _ in given)]
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), [v for _, v in given]


def _where(f: AlertFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.status in ("firing", "resolved"):
        clauses.append("o.status = ?")
        params.append(f.status)
    if f.alertname:
        clauses.append("o.alertname = ?")
        params.append(f.alertname)
    if f.instance:
        clauses.append("instr(o.instance, ?) > 0")
        params.append(f.instance)
    if f.verdict == "none":
        clauses.append("v.verdict IS NULL")
    elif f.verdict == "labelled":
        clauses.append("v.verdict IS NOT NULL")
    elif f.verdict in VERDICTS:
        clauses.append("v.verdict = ?")
        params.append(f.verdict)
    if f.since:
        clauses.append("(o.status = 'firing' OR COALESCE(o.ends_at, o.last_seen) >= ?)")
        params.append(f.since)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _occurrence(r: sqlite3.Row | tuple) -> Occurrence:
    return Occurrence(
        fingerprint=r[0],
        starts_at=r[1],
        status=r[2],
        ends_at=r[3],
        last_seen=r[4],
        alertname=r[5],
        instance=r[6],
        severity=r[7],
        labels=json.loads(r[8]),
        annotations=json.loads(r[9]),
        generator_url=r[10],
        external_url=r[11],
        verdict=r[12],
        verdict_class=r[13] or "",
        verdict_comment=r[14] or "",
        verdict_author=r[15] or "",
        verdict_at=r[16],
    )


def _label_record(o: Occurrence) -> LabelRecord:
    start = parse_rfc3339(o.starts_at)
    end = parse_rfc3339(o.ends_at or o.last_seen)
    if end < start:  # clock skew between Prometheus and us; an instant is still a label
        end = start
    verified = o.verdict is not None
    return LabelRecord(
        instance=o.instance or ALL_INSTANCES,
        start=start,
        end=end,
        verdict=o.verdict if verified else VERDICT_ANOMALY,
        source="verified" if verified else "weak",
        anomaly_class=o.verdict_class if verified else class_of_alert(o.alertname),
        alertname=o.alertname,
        fingerprint=o.fingerprint,
        comment=o.verdict_comment,
    )


MAX_RANGE = timedelta(days=31)
MAX_RANGE_COMMENT = 1000
MAX_RANGE_INSTANCE = 256


@dataclass(frozen=True)
class RangeLabel:
    """A time range of one instance an engineer labelled on its chart."""

    id: int
    instance: str
    start: str  # storage keys
    end: str
    verdict: str
    anomaly_class: str
    comment: str
    author: str

    def record(self) -> LabelRecord:
        return LabelRecord(
            instance=self.instance, start=parse_rfc3339(self.start), end=parse_rfc3339(self.end),
            verdict=self.verdict, source="verified", anomaly_class=self.anomaly_class,
            alertname="", fingerprint=f"range-{self.id}", comment=self.comment,
        )  # fmt: skip


def since_key(spec: str, now: datetime | None = None) -> str:
    """'24h', '7d', '30m' or an RFC 3339 time -> storage key; '' or 'all' -> ''."""
    spec = spec.strip()
    if not spec or spec == "all":
        return ""
    m = re.fullmatch(r"(\d{1,5})([mhd])", spec)
    if m:
        unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return storage_key((now or utcnow()) - timedelta(**{unit: int(m.group(1))}))
    return storage_key(parse_rfc3339(spec))
