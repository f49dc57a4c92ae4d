"""SqliteStore: the embedded store (stdlib sqlite3, WAL).

Writes.  One write connection, group commit: each write is a closure queued with an asyncio future;
the writer takes everything queued (up to ``max_batch``), runs each closure in its own SAVEPOINT
inside one transaction and commits once, then resolves the futures.  So one commit (and, with
``durability="full"``, one fsync) serves many concurrent writers, and a failing write rolls back
alone.  Where the writer runs depends on the durability setting:

* ``normal`` (default): on the event loop, once per loop iteration for everything queued during it.
  A WAL commit without fsync costs tens of microseconds, far less than handing work to a thread
  that must then win the GIL from a busy loop (measured: that hand-off dominated write latency).
  Automatic checkpoints are off on this connection; a side thread checkpoints through its own
  connection, so copying WAL pages never blocks the loop, and keeps the WAL bounded by holding
  commits (not reads) for one full checkpoint when it grows too large
  (:mod:`feeds.store.sqlite_wal`).
* ``full``: on a dedicated writer thread, because fsync would block the loop.

Reads run directly on the event loop thread, every one a short indexed query, so no thread hop is
paid on the hot read path.  With ``normal`` durability they share the write connection (its page
cache then survives commits); with ``full`` they use their own, and WAL lets them proceed while
the writer thread's transaction is open.

Timelines.  Entries have one index, the primary key (feed, id): removal by foreign_id or origin
scans the feed's rows, which are capped, so fan-out inserts touch a single B-tree.  Trimming to the
cap runs for a feed once every ``TRIM_EVERY`` inserted entries (``feeds.store.trim``), so a
timeline may hold up to that many entries beyond its cap between trims; reads are unaffected.

Push journal.  ``push_jobs`` holds the chunks of fan-outs still to be written (see the seam's
guarantees): a closure writes an activity's own entries and its job rows in one savepoint of one
group commit, and each finished chunk deletes its row in the savepoint that inserts its entries.
Ids are AUTOINCREMENT, so a deleted id never comes back.  One process owns the file, so
:meth:`SqliteStore.start` releases every lease: rows found then were orphaned by a crash.

Durability.  ``synchronous`` is ``NORMAL`` by default: a write acknowledged to its caller survives a
killed process (the WAL frame is in the OS), and a power loss may drop the last transactions.  Set
``durability="full"`` to fsync the WAL on every group commit, which makes acknowledged writes
survive power loss too.  Journalled pushes have the same durability as the write that
acknowledged their activity.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import orjson

from feeds.activity import Activity
from feeds.store.base import Bounds, ClaimedJob, Entry, Follow, Post, Posted, PushJob, ReadPlan
from feeds.store.sqlite_wal import CHECKPOINT_EVERY_S, WAL_LIMIT_FRAMES, WalKeeper
from feeds.store.trim import TrimSchedule

T = TypeVar("T")
_Op = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", int]  # op, its future, rows
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]

_SCHEMA = """
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
CREATE TABLE IF NOT EXISTS placements(
  app TEXT NOT NULL, id INTEGER NOT NULL, feed TEXT NOT NULL, PRIMARY KEY(app, id, feed)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_state(feed TEXT PRIMARY KEY, last_read_us INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT, lease_until_us INTEGER NOT NULL, attempts INTEGER NOT NULL,
  job BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS push_jobs_lease ON push_jobs(lease_until_us);
"""
# Feed keys never hold a newline (user ids are checked), so it can separate the pulled targets.
_READ_PLAN = """
SELECT (SELECT count(*) FROM follows WHERE source=?1),
  (SELECT group_concat(f.target, char(10)) FROM follows f JOIN follower_counts c ON c.feed = f.target
   WHERE f.source=?1 AND c.n > ?2),
  (SELECT last_read_us FROM feed_state WHERE feed=?1)
"""
FLUSH_ROWS = 256  # rows per loop-side group commit: ~5 ms of fan-out inserts on a warm store
_ENTRY_COLS = "id, origin, foreign_id, group_key, tags, seen, read"


def _entry(row: tuple[Any, ...]) -> Entry:
    return Entry(row[0], row[1], row[2], row[3], tuple(orjson.loads(row[4])), bool(row[5]), bool(row[6]))


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _insert_entries(
    conn: sqlite3.Connection, feeds: Sequence[str], entries: Sequence[Entry], cap: int, due: Sequence[str]
) -> None:
    """Insert ``entries`` into every feed (present ones ignored), then trim the ``due`` feeds to ``cap``."""
    rows = [
        (e.id, e.origin, e.foreign_id, e.group_key, orjson.dumps(list(e.tags)).decode(), e.seen, e.read)
        for e in entries
    ]
    conn.executemany(
        f"INSERT OR IGNORE INTO entries(feed, {_ENTRY_COLS}) VALUES (?,?,?,?,?,?,?,?)",
        [(feed, *row) for feed in feeds for row in rows],
    )
    conn.executemany(
        "DELETE FROM entries WHERE feed=?1 AND id <= "
        "(SELECT id FROM entries WHERE feed=?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
        [(feed, cap) for feed in due],
    )


class SqliteStore:
    def __init__(
        self,
        path: str,
        *,
        durability: Literal["normal", "full"] = "normal",
        max_batch: int = 512,
        wal_limit_frames: int = WAL_LIMIT_FRAMES,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        self._path = path
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._on_loop = durability == "normal"
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._pending: list[_Op] = []
        self._trims = TrimSchedule()
        self._flush_scheduled = False
        self._wal: WalKeeper | None = None
        self._wal_limit, self._checkpoint_every_s = wal_limit_frames, checkpoint_every_s
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: hot timelines stay in memory
        conn.execute("PRAGMA wal_autocheckpoint=8192")  # fewer, larger checkpoints under fan-out
        return conn

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        setup = self._connect()
        setup.executescript(_SCHEMA)
        setup.execute("UPDATE push_jobs SET lease_until_us=0 WHERE lease_until_us > 0")  # see "Push journal"
        setup.close()
        self._closing = False
        if self._on_loop:
            # Reads share the loop's write connection: a group commit never spans an await, so no
            # read sees an open transaction, and a connection's page cache survives its own commits
            # (another connection's commit would empty a separate reader's cache every time).
            self._writer = self._reader = self._connect()
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            self._wal = WalKeeper(
                self._connect,
                self._loop,
                self._schedule_flush,
                limit_frames=self._wal_limit,
                every_s=self._checkpoint_every_s,
            )
            self._wal.start()
        else:
            self._reader = self._connect()
            self._thread = threading.Thread(target=self._writer_main, name="feeds-sqlite-writer", daemon=True)
            self._thread.start()

    @property
    def wal_restarts(self) -> int:
        """How many times the WAL keeper held commits to start the WAL over."""
        return 0 if self._wal is None else self._wal.restarts

    async def close(self) -> None:
        self._closing = True
        while self._pending:
            self._flush()  # commit what is queued before the connection goes
        if self._wal is not None:
            await asyncio.to_thread(self._wal.stop)
            self._wal = None
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for conn in {id(c): c for c in (self._writer, self._reader) if c is not None}.values():
            conn.close()
        self._writer = self._reader = None

    def _flush(self) -> None:
        """Run on the loop: commit everything queued during the last iteration as one group."""
        self._flush_scheduled = False
        if self._wal is not None and self._wal.holding and not self._closing:
            return  # the WAL keeper resumes us once its checkpoint is done
        pending, taken, rows = self._pending, 0, 0
        # Bounded by rows as well as ops: one group runs in one loop callback, so its size is how
        # long every read waits.  A single op larger than the bound still goes alone.
        while taken < len(pending) and taken < self._max_batch:
            rows += pending[taken][2]
            if taken and rows > FLUSH_ROWS:
                break
            taken += 1
        batch, self._pending = pending[:taken], pending[taken:]
        if self._pending:
            self._schedule_flush()
        if batch and self._writer is not None:
            _resolve_all(self._run_batch(self._writer, batch))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    # --- the writer -----------------------------------------------------------------------------
    def _writer_main(self) -> None:
        conn = self._connect()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            outcomes = self._run_batch(conn, batch)
            assert self._loop is not None
            self._loop.call_soon_threadsafe(_resolve_all, outcomes)  # one loop wake-up per group
        conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        conn.execute("BEGIN IMMEDIATE")
        for fn, fut, _ in batch:
            conn.execute("SAVEPOINT op")
            try:
                result = fn(conn)
            except Exception as exc:  # one failing write must not sink the rest of the group
                conn.execute("ROLLBACK TO op")
                outcomes.append((fut, None, exc))
            else:
                outcomes.append((fut, result, None))
            conn.execute("RELEASE op")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as commit_error:
            conn.execute("ROLLBACK")
            outcomes = [(fut, None, commit_error) for fut, _, _ in outcomes]
        return outcomes

    async def _write(self, fn: Callable[[sqlite3.Connection], T], rows: int = 1) -> T:
        if (self._writer is None and self._thread is None) or self._loop is None:
            raise RuntimeError("SqliteStore is not started")
        fut: asyncio.Future[T] = self._loop.create_future()
        if self._on_loop:
            self._pending.append((fn, fut, rows))
            self._schedule_flush()
        else:
            self._queue.put((fn, fut, rows))
        return await fut

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise RuntimeError("SqliteStore is not started")
        return self._reader.execute(sql, args).fetchall()

    # --- activity store -------------------------------------------------------------------------
    async def put_activities(self, app: str, activities: Sequence[Activity]) -> list[Activity]:
        def op(conn: sqlite3.Connection) -> list[Activity]:
            stored: list[Activity] = []
            for act in activities:
                if act.foreign_id is not None:
                    row = conn.execute(
                        "SELECT body FROM activities WHERE app=? AND foreign_id=? AND time_us=?",
                        (app, act.foreign_id, act.time_us),
                    ).fetchone()
                    if row is not None:
                        stored.append(Activity.loads(row[0]))
                        continue
                while True:
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO activities(app, id, foreign_id, time_us, body) "
                        "VALUES (?,?,?,?,?)",
                        (app, act.id, act.foreign_id, act.time_us, act.dumps()),
                    )
                    if cur.rowcount == 1:
                        break
                    act = act.with_id(act.id + 1)  # id taken by another activity: stay in the same ms
                stored.append(act)
            return stored

        return await self._write(op)

    async def get_bodies(self, app: str, ids: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            sql = f"SELECT id, body FROM activities WHERE app=? AND id IN ({_marks(len(chunk))})"
            out.update(self._read(sql, [app, *chunk]))
        return out

    async def get_activities(self, app: str, ids: Sequence[int]) -> dict[int, Activity]:
        return {i: Activity.loads(body) for i, body in (await self.get_bodies(app, ids)).items()}

    async def get_by_foreign_id_time(
        self, app: str, pairs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], Activity]:
        out: dict[tuple[str, int], Activity] = {}
        for fid, time_us in pairs:
            rows = self._read(
                "SELECT body FROM activities WHERE app=? AND foreign_id=? AND time_us=?", (app, fid, time_us)
            )
            if rows:
                out[(fid, time_us)] = Activity.loads(rows[0][0])
        return out

    async def replace_activities(self, app: str, activities: Sequence[Activity]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE activities SET body=? WHERE app=? AND id=?",
                [(act.dumps(), app, act.id) for act in activities],
            )

        await self._write(op)

    async def add_placements(self, app: str, activity_id: int, feeds: Sequence[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT OR IGNORE INTO placements(app, id, feed) VALUES (?,?,?)",
                [(app, activity_id, f) for f in feeds],
            )

        await self._write(op)

    async def placements(self, app: str, activity_id: int) -> list[str]:
        rows = self._read(
            "SELECT feed FROM placements WHERE app=? AND id=? ORDER BY feed", (app, activity_id)
        )
        return [r[0] for r in rows]

    # --- timeline store -------------------------------------------------------------------------
    async def add_entries(self, feeds: Sequence[str], entries: Sequence[Entry], cap: int) -> None:
        due = self._trims.due(feeds, len(entries))
        await self._write(
            lambda conn: _insert_entries(conn, feeds, entries, cap, due), len(feeds) * len(entries)
        )

    async def add_and_push(self, post: Post) -> Posted:
        """The follower count and filter are plain reads; placements and every entry then go in
        one savepoint of a group commit."""
        active: list[str] = []
        if await self.follower_count(post.feed) <= post.pull_threshold:
            active = await self.active_followers(post.feed, post.since_us)
        done = len(active) <= post.max_push
        writes: list[tuple[Sequence[str], Entry, int, list[str]]] = []
        pushed: list[str] = []
        if done:
            writes.append(([post.feed], post.entry, post.cap, self._trims.due([post.feed], 1)))
            for keys, entry, cap in post.route(active):
                writes.append((keys, entry, cap, self._trims.due(keys, 1)))
                pushed += keys
        rows = [(post.app, post.entry.id, f) for f in post.placements]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany("INSERT OR IGNORE INTO placements(app, id, feed) VALUES (?,?,?)", rows)
            for keys, entry, cap, due in writes:
                _insert_entries(conn, keys, [entry], cap, due)

        await self._write(op, len(rows) + sum(len(w[0]) for w in writes))
        return Posted(True, pushed) if done else Posted(False, active)

    async def remove_entries(self, feeds: Sequence[str], ids: Sequence[int]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM entries WHERE feed=? AND id=?", [(f, i) for f in feeds for i in ids]
            )

        await self._write(op)

    # --- push journal ---------------------------------------------------------------------------
    async def add_entries_and_jobs(
        self,
        feeds: Sequence[str],
        entries: Sequence[Entry],
        cap: int,
        jobs: Sequence[PushJob],
        lease_until_us: int,
    ) -> list[int]:
        due = self._trims.due(feeds, len(entries))
        payloads = [job.dumps() for job in jobs]

        def op(conn: sqlite3.Connection) -> list[int]:
            _insert_entries(conn, feeds, entries, cap, due)
            sql = "INSERT INTO push_jobs(lease_until_us, attempts, job) VALUES (?, 0, ?)"
            return [int(conn.execute(sql, (lease_until_us, p)).lastrowid or 0) for p in payloads]

        return await self._write(op, len(feeds) * len(entries) + len(payloads))

    async def claim_push_jobs(self, now_us: int, lease_until_us: int, limit: int) -> list[ClaimedJob]:
        def op(conn: sqlite3.Connection) -> list[ClaimedJob]:
            rows = conn.execute(
                "UPDATE push_jobs SET lease_until_us=?, attempts=attempts+1 WHERE id IN "
                "(SELECT id FROM push_jobs WHERE lease_until_us < ? ORDER BY id LIMIT ?) "
                "RETURNING id, attempts, job",
                (lease_until_us, now_us, limit),
            ).fetchall()
            return sorted((ClaimedJob(i, n, PushJob.loads(job)) for i, n, job in rows), key=lambda c: c.id)

        return await self._write(op)

    async def finish_push_job(self, job_id: int, job: PushJob | None) -> None:
        due = [] if job is None else self._trims.due(job.feeds, 1)

        def op(conn: sqlite3.Connection) -> None:
            if job is not None:
                _insert_entries(conn, job.feeds, [job.entry], job.cap, due)
            conn.execute("DELETE FROM push_jobs WHERE id=?", (job_id,))

        await self._write(op, 1 if job is None else len(job.feeds))

    async def push_job_count(self) -> int:
        return int(self._read("SELECT count(*) FROM push_jobs")[0][0])

    async def remove_foreign_id(self, feed: str, foreign_id: str) -> list[Entry]:
        def op(conn: sqlite3.Connection) -> list[Entry]:
            rows = conn.execute(
                f"DELETE FROM entries WHERE feed=? AND foreign_id=? RETURNING {_ENTRY_COLS}",
                (feed, foreign_id),
            ).fetchall()
            return sorted((_entry(r) for r in rows), key=lambda e: -e.id)

        return await self._write(op)

    async def remove_origin(self, feed: str, origin: str) -> int:
        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM entries WHERE feed=? AND origin=?", (feed, origin)).rowcount

        return await self._write(op)

    async def read_entries(
        self, feed: str, *, limit: int, offset: int = 0, bounds: Bounds | None = None, tag: str | None = None
    ) -> list[Entry]:
        sql = [f"SELECT {_ENTRY_COLS} FROM entries WHERE feed=?"]
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
        sql.append("ORDER BY id DESC LIMIT ? OFFSET ?")
        args += [limit, offset]
        return [_entry(r) for r in self._read(" ".join(sql), args)]

    async def read_entries_up(self, feed: str, *, lowest: int, limit: int) -> list[Entry]:
        rows = self._read(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE feed=? AND id>=? ORDER BY id LIMIT ?",
            (feed, lowest, limit),
        )
        return [_entry(r) for r in rows]

    async def set_entry_columns(
        self, feeds: Sequence[str], activity_id: int, *, group_key: str, tags: Sequence[str]
    ) -> None:
        encoded = orjson.dumps(list(tags)).decode()

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE entries SET group_key=?, tags=? WHERE feed=? AND id=?",
                [(group_key, encoded, f, activity_id) for f in feeds],
            )

        await self._write(op)

    async def get_entries(self, feed: str, ids: Sequence[int]) -> list[Entry]:
        if not ids:
            return []
        rows = self._read(
            f"SELECT {_ENTRY_COLS} FROM entries WHERE feed=? AND id IN ({_marks(len(ids))}) ORDER BY id DESC",
            [feed, *ids],
        )
        return [_entry(r) for r in rows]

    async def mark(self, feed: str, ids: Sequence[int] | None, *, seen: bool, read: bool) -> None:
        sets = ", ".join(s for s, on in (("seen=1", seen), ("read=1", read)) if on)
        if not sets:
            return

        def op(conn: sqlite3.Connection) -> None:
            if ids is None:
                conn.execute(f"UPDATE entries SET {sets} WHERE feed=?", (feed,))
            else:
                conn.executemany(f"UPDATE entries SET {sets} WHERE feed=? AND id=?", [(feed, i) for i in ids])

        await self._write(op)

    # --- follows --------------------------------------------------------------------------------
    async def follow(self, follows: Sequence[Follow]) -> list[bool]:
        def op(conn: sqlite3.Connection) -> list[bool]:
            created = []
            for f in follows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO follows(source, target, created_us) VALUES (?,?,?)",
                    (f.source, f.target, f.created_us),
                )
                created.append(cur.rowcount == 1)
                if cur.rowcount == 1:  # counts are denormalised so reads never count(*) a big author
                    conn.execute(
                        "INSERT INTO follower_counts(feed, n) VALUES (?, 1) "
                        "ON CONFLICT(feed) DO UPDATE SET n=n+1",
                        (f.target,),
                    )
            return created

        return await self._write(op)

    async def unfollow(self, source: str, target: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM follows WHERE source=? AND target=?", (source, target))
            if cur.rowcount == 1:
                conn.execute("UPDATE follower_counts SET n=n-1 WHERE feed=?", (target,))
            return cur.rowcount == 1

        return await self._write(op)

    async def followers(self, target: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = self._read(
            "SELECT source, target, created_us FROM follows WHERE target=? "
            "ORDER BY created_us DESC, source LIMIT ? OFFSET ?",
            (target, -1 if limit is None else limit, offset),
        )
        return [Follow(*r) for r in rows]

    async def following(self, source: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = self._read(
            "SELECT source, target, created_us FROM follows WHERE source=? "
            "ORDER BY created_us DESC, target LIMIT ? OFFSET ?",
            (source, -1 if limit is None else limit, offset),
        )
        return [Follow(*r) for r in rows]

    async def follower_count(self, target: str) -> int:
        rows = self._read("SELECT n FROM follower_counts WHERE feed=?", (target,))
        return int(rows[0][0]) if rows else 0

    async def read_plan(self, feed: str, pull_threshold: int) -> ReadPlan:
        # One statement instead of listing every following: the common read only needs the few
        # pulled ones, and the count walks the covering index without building rows.
        ((following, pulled, last),) = self._read(_READ_PLAN, (feed, pull_threshold))
        return ReadPlan(following, tuple(pulled.split("\n")) if pulled else (), last)

    async def follower_counts(self, targets: Sequence[str]) -> dict[str, int]:
        out = dict.fromkeys(targets, 0)
        for start in range(0, len(targets), 500):
            chunk = list(targets[start : start + 500])
            rows = self._read(
                f"SELECT feed, n FROM follower_counts WHERE feed IN ({_marks(len(chunk))})", chunk
            )
            out.update(rows)
        return out

    # --- feed activity --------------------------------------------------------------------------
    async def set_last_read(self, feed: str, us: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO feed_state(feed, last_read_us) VALUES (?, ?) "
                "ON CONFLICT(feed) DO UPDATE SET last_read_us=excluded.last_read_us",
                (feed, us),
            )

        await self._write(op)

    async def last_read(self, feed: str) -> int | None:
        rows = self._read("SELECT last_read_us FROM feed_state WHERE feed=?", (feed,))
        return int(rows[0][0]) if rows else None

    async def active_followers(self, target: str, since_us: int) -> list[str]:
        rows = self._read(
            "SELECT f.source FROM follows f JOIN feed_state s ON s.feed = f.source "
            "WHERE f.target=? AND s.last_read_us >= ?",
            (target, since_us),
        )
        return [r[0] for r in rows]


def _resolve_all(outcomes: list[_Outcome]) -> None:
    for fut, result, exc in outcomes:
        if fut.done():  # the awaiting task was cancelled
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
