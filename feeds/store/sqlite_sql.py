"""The embedded store's schema and the SQL shared by its methods (see :mod:`feeds.store.sqlite`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, Protocol

import orjson

from feeds.store.base import Bounds, Entry

SCHEMA = """
CREATE TABLE IF NOT EXISTS activities(
  app TEXT NOT NULL, id INTEGER NOT NULL, foreign_id TEXT, time_us INTEGER NOT NULL, body BLOB NOT NULL,
  PRIMARY KEY(app, id)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS activities_fid ON activities(app, foreign_id, time_us)
  WHERE foreign_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS entries(
  feed TEXT NOT NULL, id INTEGER NOT NULL, origin TEXT, foreign_id TEXT, group_key TEXT NOT NULL,
  tags TEXT NOT NULL, seen INTEGER NOT NULL, read INTEGER NOT NULL,
  PRIMARY KEY(feed, id)) WITHOUT ROWID;
DROP INDEX IF EXISTS entries_fid;
DROP INDEX IF EXISTS entries_origin;
CREATE TABLE IF NOT EXISTS follows(
  source TEXT NOT NULL, target TEXT NOT NULL, created_us INTEGER NOT NULL,
  PRIMARY KEY(source, target)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follows_target ON follows(target, created_us);
CREATE INDEX IF NOT EXISTS follows_source ON follows(source, created_us);
CREATE TABLE IF NOT EXISTS follower_counts(feed TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS follower_counts_n ON follower_counts(n);
CREATE TABLE IF NOT EXISTS placements(
  app TEXT NOT NULL, id INTEGER NOT NULL, feed TEXT NOT NULL, PRIMARY KEY(app, id, feed)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_state(feed TEXT PRIMARY KEY, last_read_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT, lease_until_us INTEGER NOT NULL, attempts INTEGER NOT NULL,
  job BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS push_jobs_lease ON push_jobs(lease_until_us);
"""
# Feed keys never hold a newline (user ids are checked), so it can separate the followed targets.
READ_PLAN = """
SELECT group_concat(target, char(10)), (SELECT last_read_us FROM feed_state WHERE feed=?1)
FROM follows WHERE source=?1
"""
ENTRY_COLS = "id, origin, foreign_id, group_key, tags, seen, read"
SLIM_COLS = "id, origin"


def entries_of(rows: Iterable[tuple[Any, ...]]) -> list[Entry]:
    """Entries from rows of ``ENTRY_COLS``.  One list comprehension with no Python call per row (a
    timeline read turns 25 or more): the named tuple's own constructor is such a call, and it was
    most of the cost.  Most entries carry no tags."""
    new = tuple.__new__
    return [
        new(
            Entry,
            (r[0], r[1], r[2], r[3], () if r[4] == "[]" else tuple(orjson.loads(r[4])), r[5] != 0, r[6] != 0),
        )
        for r in rows
    ]


def slim_entries_of(rows: Iterable[tuple[Any, ...]]) -> list[Entry]:
    """Entries from rows of ``SLIM_COLS``, the other columns at their defaults.  A flat page uses
    no more, and leaving five columns undecoded took about a third off a timeline's query and rows
    here (34-49 against 50-80 us, full dataset, pages cached)."""
    new = tuple.__new__
    return [new(Entry, (r[0], r[1], None, "", (), False, False)) for r in rows]


def range_query(cols: str, feed: str, bounds: Bounds | None, tag: str | None) -> tuple[str, list[Any]]:
    """``SELECT cols`` of ``feed``'s entries within ``bounds`` (and with ``tag``), newest first."""
    sql = [f"SELECT {cols} FROM entries WHERE feed=?"]
    args: list[Any] = [feed]
    bounds = bounds or Bounds()
    upper, lower = bounds.upper(), bounds.lower()
    if upper is not None:
        sql.append("AND id<=?")
        args.append(upper)
    if lower is not None:
        sql.append("AND id>=?")
        args.append(lower)
    if tag is not None:
        sql.append("AND EXISTS (SELECT 1 FROM json_each(entries.tags) WHERE value=?)")
        args.append(tag)
    sql.append("ORDER BY id DESC")
    return " ".join(sql), args


def marks(n: int) -> str:
    return ",".join("?" * n)


class EntriesWatch(Protocol):
    """Shown every write to ``entries`` before it runs (the read path's head bounds,
    :mod:`feeds.store.sqlite_heads`, must never be below a stored id nor keep a changed window)."""

    def inserting(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Rows of (feed, ``ENTRY_COLS``) about to be inserted: :func:`insert_entry_rows`."""

    def changing(self, feed: str, ids: Iterable[int] | None) -> None:
        """Rows of ``feed`` with these ids (None: any) about to be deleted or updated: :func:`changing`."""


class StoreConnection(sqlite3.Connection):
    """The store's connections, each with an optional :class:`EntriesWatch`."""

    entries_watch: EntriesWatch | None = None


def changing(conn: sqlite3.Connection, feed: str, ids: Iterable[int] | None) -> None:
    """Tell the connection's watch, before the statement runs, which rows of ``feed`` a DELETE or
    UPDATE on ``entries`` may touch (ids, or None for any).  Every such statement calls this."""
    watch = getattr(conn, "entries_watch", None)
    if watch is not None:
        watch.changing(feed, ids)


def open_connection(path: str, sync: str, wal_keep: int) -> StoreConnection:
    """A connection to the store's file, for the loop writer and reader or a side thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, factory=StoreConnection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA wal_autocheckpoint=8192")  # fewer, larger checkpoints under fan-out
    # Statement journals and sorts stay in memory: each temp file SQLite opens first looks up
    # its directory, then creates and deletes a file, on the loop (seen: one access("/var/tmp")
    # waited 530 ms for an evicted directory block while the disk synced a checkpoint).
    conn.execute("PRAGMA temp_store=MEMORY")
    # Where the WAL starts over (loop commits) it must shrink to its locked prefix: see sqlite_wal
    conn.execute(f"PRAGMA journal_size_limit={wal_keep}")
    return conn


def insert_entry_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert rows of (feed, ``ENTRY_COLS``), present ones ignored: every insert into ``entries``
    goes through here.  The watch is told in Python, not by a trigger: a temporary trigger's
    program cost ~0.7 us per inserted row on the full benchmark dataset (bench_layout.py), about a
    sixth of a merged row's whole cost, though it called into Python for almost none of them."""
    watch = getattr(conn, "entries_watch", None)
    if watch is not None:
        watch.inserting(rows)
    whole = len(rows) - len(rows) % ROWS_PER_INSERT
    if whole:
        n = ROWS_PER_INSERT
        groups = [list(chain.from_iterable(rows[at : at + n])) for at in range(0, whole, n)]
        conn.executemany(INSERT_ENTRY_ROWS, groups)
    if whole < len(rows):
        conn.executemany(INSERT_ENTRY, rows[whole:])


def insert_entries(
    conn: sqlite3.Connection, feeds: Sequence[str], entries: Sequence[Entry], cap: int, due: Sequence[str]
) -> None:
    """Insert ``entries`` into every feed (present ones ignored), then trim the ``due`` feeds to ``cap``."""
    rows = [entry_row(e) for e in entries]
    insert_entry_rows(conn, [(feed, *row) for feed in feeds for row in rows])
    trim_feeds(conn, [(feed, cap) for feed in due])


def entry_row(e: Entry) -> tuple[Any, ...]:
    """An entry's columns as SQLite parameters.  The flags go as ints: the sqlite3 module binds
    only exact ints, floats and strings directly; a bool first goes through its adapter lookup,
    which fails by raising and clearing an AttributeError (executemany of merge-shaped rows: 2.5-3.0
    against 1.5-1.8 us per row)."""
    tags = orjson.dumps(list(e.tags)).decode() if e.tags else "[]"
    return (e.id, e.origin, e.foreign_id, e.group_key, tags, 1 if e.seen else 0, 1 if e.read else 0)


INSERT_ENTRY = f"INSERT OR IGNORE INTO entries(feed, {ENTRY_COLS}) VALUES (?,?,?,?,?,?,?,?)"
# Rows go several to a statement: executemany's own work per row (a reset, a step, the GIL let go
# and taken back) was ~0.25 of the ~3 us a merged row costs to insert on the full benchmark
# dataset.  OR IGNORE still applies row by row.
ROWS_PER_INSERT = 32
INSERT_ENTRY_ROWS = INSERT_ENTRY + ",(?,?,?,?,?,?,?,?)" * (ROWS_PER_INSERT - 1)


def insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[str, Entry]]) -> None:
    """Insert (feed, entry) pairs, present ones ignored."""
    insert_entry_rows(conn, [(feed, *entry_row(e)) for feed, e in rows])


def trim_feeds(conn: sqlite3.Connection, feeds: Sequence[tuple[str, int]]) -> None:
    """Trim each (feed, cap) to its ``cap`` newest entries."""
    for feed, _ in feeds:
        changing(conn, feed, None)
    conn.executemany(
        "DELETE FROM entries WHERE feed=?1 AND id <= "
        "(SELECT id FROM entries WHERE feed=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        feeds,
    )
