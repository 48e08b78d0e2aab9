"""`sqlite:///path`: decisions in one SQLite file, the default for one machine.

Several processes may open the same file (the watcher, the edge's workers, the CLI): WAL mode lets readers and
one writer work at once, writes take the lock up front (`BEGIN IMMEDIATE`) and wait up to `busy_timeout` for it
(https://www.sqlite.org/wal.html). Changes are announced through a `changes` table with an increasing sequence
number; feeds poll it every `poll_interval_s` and skip the query when `PRAGMA data_version` says nothing was
committed since the last look (https://www.sqlite.org/pragma.html#pragma_data_version).

Paths follow SQLAlchemy's convention: `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`.

Failures: every method raises `ServiceError` when the file cannot be read or written (disk full, locked for
longer than the busy timeout, removed). None fails open silently; the `DecisionCache` above it keeps enforcing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from floodwall.errors import InputError, ServiceError
from floodwall.model import Action, Decision
from floodwall.store.base import FeedSubscription, checked
from floodwall.store.codec import decision_from_json, decision_to_json, normalise_target
from floodwall.types import Change, ChangeKind, Clock, DecisionRecord, SystemClock

__all__ = ["SQLiteStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, action TEXT NOT NULL,
    created REAL NOT NULL, expires REAL NOT NULL, body TEXT NOT NULL,
    revoked_at REAL, revoked_reason TEXT, revoked_by TEXT);
CREATE INDEX IF NOT EXISTS decisions_by_target ON decisions (target, created);
CREATE TABLE IF NOT EXISTS current (target TEXT PRIMARY KEY, seq INTEGER NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS current_by_expiry ON current (expires);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL,
    decision_seq INTEGER, reason TEXT);
"""
#: Changes kept for feeds that fall behind; a feed that finds a gap tells its reader to resync.
CHANGES_KEPT: Final = 100_000
BUSY_TIMEOUT_MS: Final = 5_000


def _connect(path: str) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as error:
        raise InputError(f"store sqlite:///{path}: cannot open ({error})") from None
    return connection


def _ts(when: datetime) -> float:
    return when.timestamp()


def _time(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class _PollingFeed:
    """Changes committed after the feed was opened, found by polling the `changes` table."""

    def __init__(self, path: str, interval_s: float) -> None:
        self._connection = _connect(path)
        self._interval_s = interval_s
        try:
            row = self._connection.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
            self._last_seq: int = row[0]
            self._data_version = self._version()
        except sqlite3.Error as error:
            self._connection.close()
            raise ServiceError(f"store sqlite:///{path}: {error}") from None
        self._path = path
        self._next_check_at = time.monotonic() + interval_s

    def _version(self) -> int:
        version: int = self._connection.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _read(self) -> list[Change]:
        rows = self._connection.execute(
            "SELECT ch.seq, ch.kind, ch.target, ch.reason, d.body FROM changes ch "
            "LEFT JOIN decisions d ON d.seq = ch.decision_seq WHERE ch.seq > ? ORDER BY ch.seq LIMIT 10000",
            (self._last_seq,),
        ).fetchall()
        changes: list[Change] = []
        if rows and rows[0][0] != self._last_seq + 1:
            changes.append(Change(kind="resync", target=""))  # pruned before we read them
        for seq, kind, target, reason, body in rows:
            decision = decision_from_json(body) if body is not None else None
            kind_name: ChangeKind = "put" if kind == "put" else "revoke"
            changes.append(Change(kind=kind_name, target=target, decision=decision, reason=reason, seq=seq))
            self._last_seq = seq
        return changes

    def poll(self, timeout_s: float) -> list[Change]:
        # Checks keep their own schedule, every `interval_s` however often poll is called.
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                now = time.monotonic()
                if now >= self._next_check_at:
                    self._next_check_at = now + self._interval_s
                    version = self._version()
                    if version != self._data_version:
                        self._data_version = version
                        changes = self._read()
                        if changes:
                            return changes
                if now >= deadline:
                    return []
                time.sleep(max(0.0, min(self._next_check_at, deadline) - now))
        except sqlite3.Error as error:
            raise ServiceError(f"store sqlite:///{self._path}: {error}") from None

    def close(self) -> None:
        self._connection.close()


class SQLiteStore:
    """A `floodwall.types.Store` in one SQLite file, shared safely by several processes."""

    def __init__(self, path: str | Path, clock: Clock | None = None, poll_interval_s: float = 0.5) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._connection = _connect(self.path)
        with self._transaction() as connection:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute("INSERT OR IGNORE INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex,))

    @contextmanager
    def _transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                if write:
                    self._connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self._connection
                except BaseException:
                    if write:
                        self._connection.execute("ROLLBACK")
                    raise
                if write:
                    self._connection.execute("COMMIT")
            except sqlite3.Error as error:
                raise ServiceError(f"store {self.url}: {error}") from None

    def put(self, decisions: Iterable[Decision]) -> list[Decision]:
        """Store `decisions`, each replacing its target's current one. Raises `ServiceError` (nothing stored)."""
        stored = checked(decisions)
        with self._transaction() as connection:
            for decision in stored:
                cursor = connection.execute(
                    "INSERT INTO decisions (target, action, created, expires, body) VALUES (?, ?, ?, ?, ?)",
                    (
                        decision.target,
                        decision.action.value,
                        _ts(decision.created),
                        _ts(decision.expires),
                        decision_to_json(decision),
                    ),
                )
                seq = cursor.lastrowid
                connection.execute(
                    "INSERT OR REPLACE INTO current (target, seq, expires) VALUES (?, ?, ?)",
                    (decision.target, seq, _ts(decision.expires)),
                )
                connection.execute(
                    "INSERT INTO changes (kind, target, decision_seq) VALUES ('put', ?, ?)", (decision.target, seq)
                )
            self._prune(connection)
        return stored

    def _prune(self, connection: sqlite3.Connection) -> None:
        last: int = connection.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()[0]
        if last % 1000 < 10:  # now and then, not on every write
            connection.execute("DELETE FROM changes WHERE seq <= ?", (last - CHANGES_KEPT,))
            connection.execute("DELETE FROM current WHERE expires <= ?", (_ts(self.clock()),))

    def revoke(self, target: str, reason: str, by: str = "operator") -> Decision | None:
        """Withdraw `target`'s current unexpired decision; returns it, or None. Raises `ServiceError`."""
        target = normalise_target(target)
        now = self.clock()
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT c.seq, d.body FROM current c JOIN decisions d ON d.seq = c.seq "
                "WHERE c.target = ? AND c.expires > ?",
                (target, _ts(now)),
            ).fetchone()
            connection.execute("DELETE FROM current WHERE target = ?", (target,))
            if row is None:
                return None
            connection.execute(
                "UPDATE decisions SET revoked_at = ?, revoked_reason = ?, revoked_by = ? WHERE seq = ?",
                (_ts(now), reason, by, row[0]),
            )
            connection.execute(
                "INSERT INTO changes (kind, target, decision_seq, reason) VALUES ('revoke', ?, ?, ?)",
                (target, row[0], reason),
            )
        return decision_from_json(row[1])

    def get(self, target: str) -> Decision | None:
        """`target`'s current unexpired decision, else None. Raises `ServiceError`."""
        target = normalise_target(target)
        with self._transaction(write=False) as connection:
            row = connection.execute(
                "SELECT d.body FROM current c JOIN decisions d ON d.seq = c.seq WHERE c.target = ? AND c.expires > ?",
                (target, _ts(self.clock())),
            ).fetchone()
        return decision_from_json(row[0]) if row is not None else None

    def active(self, now: datetime | None = None) -> list[Decision]:
        """Every current decision unexpired at `now` (default: the store's clock). Raises `ServiceError`."""
        now = now if now is not None else self.clock()
        with self._transaction(write=False) as connection:
            rows = connection.execute(
                "SELECT d.body FROM current c JOIN decisions d ON d.seq = c.seq WHERE c.expires > ?", (_ts(now),)
            ).fetchall()
        return [decision_from_json(body) for (body,) in rows]

    def history(
        self, target: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[DecisionRecord]:
        """Every decision put (optionally for one target, created at or after `since`), newest first."""
        where, params = self._filter(target, since, None)
        sql = f"SELECT seq, body, revoked_at, revoked_reason, revoked_by FROM decisions {where} ORDER BY seq DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._transaction(write=False) as connection:
            rows = connection.execute(sql, params).fetchall()
        return [
            DecisionRecord(
                seq=seq, decision=decision_from_json(body), revoked_at=_time(at), revoked_reason=why, revoked_by=who
            )
            for seq, body, at, why, who in rows
        ]

    @staticmethod
    def _filter(target: str | None, since: datetime | None, action: Action | None) -> tuple[str, list[Any]]:
        clauses, params = [], list[Any]()
        if target is not None:
            clauses.append("target = ?")
            params.append(normalise_target(target))
        if since is not None:
            clauses.append("created >= ?")
            params.append(_ts(since))
        if action is not None:
            clauses.append("action = ?")
            params.append(action.value)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params

    def times_decided(self, target: str, since: datetime | None = None, action: Action | None = None) -> int:
        """How many decisions were ever put for `target` (created at or after `since`, of `action` if given)."""
        where, params = self._filter(target, since, action)
        with self._transaction(write=False) as connection:
            count: int = connection.execute(f"SELECT count(*) FROM decisions {where}", params).fetchone()[0]
        return count

    def epoch(self) -> str:
        with self._transaction(write=False) as connection:
            value: str = connection.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
        return value

    def watch(self) -> _PollingFeed:
        """A feed of changes committed from now on, by any process. Raises `ServiceError`."""
        return _PollingFeed(self.path, self.poll_interval_s)

    def subscribe(self, callback: Callable[[Change], None]) -> FeedSubscription:
        """Calls `callback` with each change, from a polling thread (every `poll_interval_s`)."""
        return FeedSubscription(self.watch, callback, name="sqlite")

    def close(self) -> None:
        with self._lock:
            self._connection.close()
