"""SqliteStore: the embedded store (stdlib sqlite3, WAL).

Writes go through :class:`~feeds.store.sqlite_commit.GroupCommit` (one write connection, group
commit, on the loop or on a writer thread depending on the durability setting); reads run directly
on the event loop thread, every one a short indexed query, so no thread hop is paid on the hot read
path.
The schema and the SQL several methods share are in :mod:`feeds.store.sqlite_sql`.

Timelines.  Entries have one index, the primary key (feed, id): removal by foreign_id or origin
scans the feed's rows, which are capped, so fan-out inserts touch a single B-tree.  Trimming to the
cap runs for a feed once every ``TRIM_EVERY`` inserted entries (``feeds.store.trim``), so a
timeline may hold up to that many entries beyond its cap between trims; reads are unaffected.

Posts.  :meth:`SqliteStore.stage_activities` settles a post's activity row by reads and queues its
insert without waiting, so the row lands in the same group commit as the post's own entry
(:mod:`feeds.store.sqlite_stage`): a post waits for one commit, not two.

Pending pushes.  A post's pushes to its followers are not written into ``entries`` with it: the
post's commit holds one ``push_log`` record instead, the entries wait in memory (every read merges
them in), and :class:`~feeds.store.sqlite_merge.WriteBehind` merges them in large feed-ordered
batches, where they share page writes (:mod:`feeds.store.sqlite_pending` has the why and how).
:meth:`SqliteStore.start` loads what a killed process left in the log back into memory.  A push
of any size is logged while the pending tier has room for it, so the push journal below serves only
posts made while it is full.

Push journal.  ``push_jobs`` holds the chunks of fan-outs still to be written (see the seam's
guarantees): a closure writes an activity's own entries and its job rows in one savepoint of one
group commit, and each finished chunk deletes its row in the savepoint that inserts its entries.
Ids are AUTOINCREMENT, so a deleted id never comes back.  One process owns the file, so
:meth:`SqliteStore.start` releases every lease: rows found then were orphaned by a crash.

Residency.  A store read through its memory map, and its WAL, are locked in memory by a side
thread, a larger store that fits its cache is loaded into it after start
(:mod:`feeds.store.sqlite_residency`), and temp files are kept in memory: the loop does file I/O,
and a page the host took back is a disk read the whole loop waits for.

Durability.  ``synchronous`` is ``NORMAL`` by default: a write acknowledged to its caller survives a
killed process (the WAL frame is in the OS), and a power loss may drop the last transactions.  Set
``durability="full"`` to fsync the WAL on every group commit, which makes acknowledged writes
survive power loss too.  Logged and journalled pushes have the same durability as the write that
acknowledged their activity.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import orjson

from feeds.activity import Activity
from feeds.store.base import Bounds, ClaimedJob, Entry, Post, Posted, PushJob, Staged
from feeds.store.body_cache import BodyCache
from feeds.store.sqlite_commit import GroupCommit
from feeds.store.sqlite_follows import Memo, SqliteFollows
from feeds.store.sqlite_heads import Heads
from feeds.store.sqlite_merge import MAX_PENDING, MERGE_AFTER_S, MERGE_ROWS, WriteBehind
from feeds.store.sqlite_pending import (
    PENDING_SCHEMA,
    Push,
    dump_pushes,
    load_log,
    merge_newest_first,
    merge_oldest_first,
    record_drops,
)
from feeds.store.sqlite_residency import Residency
from feeds.store.sqlite_sql import (
    ENTRY_COLS,
    SCHEMA,
    SLIM_COLS,
    StoreConnection,
    changing,
    entries_of,
    insert_entries,
    insert_rows,
    marks,
    open_connection,
    range_query,
    slim_entries_of,
)
from feeds.store.sqlite_stage import Staging, require_activity
from feeds.store.sqlite_wal import CHECKPOINT_EVERY_S, WAL_LIMIT_FRAMES, wal_keep_bytes
from feeds.store.trim import TrimSchedule

T = TypeVar("T")
# SQLite's own page cache, per connection, for a database of 1 GiB or more (a smaller one is mapped
# instead: feeds.store.sqlite_cache).  Reads run on the event loop, so a page SQLite has to ask the
# OS for stalls every request behind it; the OS page cache cannot be relied on to keep a large file
# (seen here: a VM whose host reclaimed it within a minute, each miss a disk read of ~100 us).  The
# bound is only reached as pages are read.
CACHE_MB = 512


class SqliteStore(SqliteFollows):
    def __init__(
        self,
        path: str,
        *,
        durability: Literal["normal", "full"] = "normal",
        max_batch: int = 512,
        wal_limit_frames: int = WAL_LIMIT_FRAMES,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
        merge_rows: int = MERGE_ROWS,
        merge_after_s: float = MERGE_AFTER_S,
        max_pending: int = MAX_PENDING,
        cache_mb: int = CACHE_MB,
        lock_pages: bool = True,
        prewarm: bool = True,
    ) -> None:
        self._path = path
        self._wal_keep = wal_keep_bytes(wal_limit_frames)
        self._residency = Residency(path, self._wal_keep, cache_mb, lock_pages=lock_pages, prewarm=prewarm)
        self._sync = "FULL" if durability == "full" else "NORMAL"
        self._commits = GroupCommit(
            self._connect,
            on_loop=durability == "normal",
            max_batch=max_batch,
            wal_limit_frames=wal_limit_frames,
            checkpoint_every_s=checkpoint_every_s,
        )
        self._reader: StoreConnection | None = None
        self._heads: Heads | None = None
        self._trims = TrimSchedule()
        self._bodies = BodyCache()  # this store is the only writer of its file's activities
        self._staging = Staging()
        self._behind = WriteBehind(
            lambda fn, rows: self._commits.write(fn, rows, alone=True),  # big writes: no SAVEPOINT
            self._trims,
            merge_rows=merge_rows,
            merge_after_s=merge_after_s,
            max_pending=max_pending,
            tick=self._replan,
        )
        self._pending = self._behind.pending
        self._big: dict[int, tuple[dict[str, str], float]] = {}
        self._plans: dict[str, Memo] = {}

    def _connect(self) -> StoreConnection:
        conn = open_connection(self._path, self._sync, self._wal_keep)
        self._residency.apply(conn)
        return conn

    def _replan(self) -> None:
        if self._reader is not None:
            self._residency.replan(self._reader)

    async def start(self) -> None:
        setup = self._connect()
        setup.executescript(SCHEMA + PENDING_SCHEMA)
        setup.execute("UPDATE push_jobs SET lease_until_us=0 WHERE lease_until_us > 0")  # see "Push journal"
        load_log(setup, self._pending, self._trims)  # what a killed process left (see "Pending pushes")
        setup.close()
        self._reader = self._commits.start(asyncio.get_running_loop())
        self._residency.start(self._reader, loop_writes=self._sync == "NORMAL")
        # Bounds need reads and writes to share one connection: only the loop writer gives that.
        self._heads = Heads(self._reader) if self._sync == "NORMAL" else None
        self._behind.start()

    @property
    def cache_loading(self) -> bool:
        """Whether the store's pages are still being loaded into its cache (sqlite_prewarm)."""
        return self._residency.loading

    @property
    def wal_restarts(self) -> int:
        return self._commits.wal_restarts

    @property
    def pending_entries(self) -> int:
        """Pushed entries not yet merged into the timelines table (reads see them all the same)."""
        return self._pending.count

    async def merge_pending(self) -> int:
        """Merge every pending push now (a cycle runs by itself too); returns the entries written."""
        return await self._behind.merge()

    async def close(self) -> None:
        if self._reader is not None:
            await self._behind.close()
        await self._residency.close()  # first: the last connection to close deletes the WAL
        reader, self._reader = self._reader, None
        await self._commits.close()
        if reader is not None:
            reader.close()  # a no-op when it is the write connection, closed above

    def _write(self, fn: Callable[[sqlite3.Connection], T], rows: int = 1) -> Awaitable[T]:
        return self._commits.write(fn, rows)

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None:
            raise RuntimeError("SqliteStore is not started")
        return self._reader.execute(sql, args).fetchall()

    # --- activity store -------------------------------------------------------------------------
    async def put_activities(self, app: str, activities: Sequence[Activity]) -> list[Activity]:
        staged = await self.stage_activities(app, activities)
        await staged.stored
        return staged.activities

    async def stage_activities(self, app: str, activities: Sequence[Activity]) -> Staged:
        """Reads settle ids and idempotency; the insert is queued, not awaited (see
        :mod:`feeds.store.sqlite_stage`)."""
        if self._reader is None:
            raise RuntimeError("SqliteStore is not started")
        stored, new = self._staging.settle(app, activities, self._read)
        if not new:
            return Staged.durable(stored)
        commit = self._commits.submit(self._staging.insert(app, new), len(new))
        self._staging.release_on(app, new, commit)
        return Staged(stored, commit)

    async def get_bodies(self, app: str, ids: Sequence[int]) -> dict[int, bytes]:
        out, missing = self._bodies.split(app, ids)
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            sql = f"SELECT id, body FROM activities WHERE app=? AND id IN ({marks(len(chunk))})"
            read = dict(self._read(sql, [app, *chunk]))
            self._bodies.add(app, read)
            out.update(read)
        return out

    async def get_activities(self, app: str, ids: Sequence[int]) -> dict[int, Activity]:
        return {i: Activity.loads(body) for i, body in (await self.get_bodies(app, ids)).items()}

    async def get_by_foreign_id_time(
        self, app: str, pairs: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], Activity]:
        out: dict[tuple[str, int], Activity] = {}
        sql = "SELECT body FROM activities WHERE app=? AND foreign_id=? AND time_us=?"
        for fid, time_us in pairs:
            for (body,) in self._read(sql, (app, fid, time_us)):  # the index is unique: one row at most
                out[(fid, time_us)] = Activity.loads(body)
        return out

    async def replace_activities(self, app: str, activities: Sequence[Activity]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE activities SET body=? WHERE app=? AND id=?",
                [(act.dumps(), app, act.id) for act in activities],
            )

        await self._write(op)
        self._bodies.forget(app, [act.id for act in activities])  # after: a read meanwhile saw the old

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
            lambda conn: insert_entries(conn, feeds, entries, cap, due), len(feeds) * len(entries)
        )

    async def add_and_push(self, post: Post) -> Posted:
        """The follower count and filter are plain reads; placements, the feed's own entry and
        the push log record (or, with too much pending, every pushed entry) then go in one
        savepoint of a group commit.  A push that can be logged is done here whatever its size:
        its log record is as durable as a journal record, and costs one row instead of a chunk
        write per ``PUSH_CHUNK`` followers, so ``max_push`` only bounds pushes written directly."""
        active: list[str] = []
        if await self.follower_count(post.feed) <= post.pull_threshold:
            active = await self.active_followers(post.feed, post.since_us)
        logging = bool(active) and self._behind.accepts(len(active))
        done = logging or len(active) <= post.max_push
        writes: list[tuple[Sequence[str], Entry, int, list[str]]] = []
        pushed: list[str] = []
        logged: list[Push] = []
        if done:
            writes.append(([post.feed], post.entry, post.cap, self._trims.due([post.feed], 1)))
            routed = post.route(active)
            if logging:
                logged = list(routed)
            else:  # too much pending already: write the pushes now
                writes += [(keys, entry, cap, self._trims.due(keys, 1)) for keys, entry, cap in routed]
            pushed = [key for keys, _, _ in routed for key in keys]
        rows = [(post.app, post.entry.id, f) for f in post.placements]
        job = dump_pushes(logged) if logged else None
        staged = self._staging.in_flight(post.app, post.entry.id)

        def op(conn: sqlite3.Connection) -> int | None:
            if staged is not None:  # queued behind its activity's insert, which may have failed
                require_activity(conn, post.app, post.entry.id, staged)
            conn.executemany("INSERT OR IGNORE INTO placements(app, id, feed) VALUES (?,?,?)", rows)
            for keys, entry, cap, due in writes:
                insert_entries(conn, keys, [entry], cap, due)
            if job is None:
                return None
            return conn.execute("INSERT INTO push_log(job) VALUES (?)", (job,)).lastrowid

        seq = await self._write(op, len(rows) + sum(len(w[0]) for w in writes) + 1)
        if seq is not None:
            self._behind.logged(seq, logged)
        return Posted(True, pushed) if done else Posted(False, active)

    async def remove_entries(self, feeds: Sequence[str], ids: Sequence[int]) -> None:
        for feed in feeds:
            self._pending.discard(feed, ids)
        drops = self._drops([(f, i) for f in feeds for i in ids])

        def op(conn: sqlite3.Connection) -> None:
            for feed in feeds:
                changing(conn, feed, ids)
            conn.executemany(
                "DELETE FROM entries WHERE feed=? AND id=?", [(f, i) for f in feeds for i in ids]
            )
            record_drops(conn, drops)

        await self._write(op)

    def _drops(self, removed: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """The removed (feed, id) pairs a load of the push log could bring back."""
        floor = self._pending.log_floor()
        return [] if floor is None else [(f, i) for f, i in removed if i >= floor]

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
            insert_entries(conn, feeds, entries, cap, due)
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
                insert_entries(conn, job.feeds, [job.entry], job.cap, due)
            conn.execute("DELETE FROM push_jobs WHERE id=?", (job_id,))

        await self._write(op, 1 if job is None else len(job.feeds))

    async def push_job_count(self) -> int:
        return int(self._read("SELECT count(*) FROM push_jobs")[0][0])

    async def remove_foreign_id(self, feed: str, foreign_id: str) -> list[Entry]:
        return await self._remove_where(feed, "foreign_id", foreign_id)

    async def remove_origin(self, feed: str, origin: str) -> int:
        """Unfollow without keep_history: the entries are found by scanning the (capped) feed."""
        return len(await self._remove_where(feed, "origin", origin))

    async def _remove_where(self, feed: str, column: str, value: str) -> list[Entry]:
        pending = self._pending.discard_where(feed, column, value)
        floor = self._pending.log_floor()

        def op(conn: sqlite3.Connection) -> list[Entry]:
            changing(conn, feed, None)
            rows = conn.execute(
                f"DELETE FROM entries WHERE feed=? AND {column}=? RETURNING {ENTRY_COLS}", (feed, value)
            ).fetchall()
            removed = {e.id: e for e in pending}
            removed.update((e.id, e) for e in entries_of(rows))
            if floor is not None:
                record_drops(conn, [(feed, i) for i in removed if i >= floor])
            return sorted(removed.values(), key=lambda e: -e.id)

        return await self._write(op)

    async def read_entries(
        self,
        feed: str,
        *,
        limit: int,
        offset: int = 0,
        bounds: Bounds | None = None,
        tag: str | None = None,
        slim: bool = False,
    ) -> list[Entry]:
        cols, build = (SLIM_COLS, slim_entries_of) if slim else (ENTRY_COLS, entries_of)
        sql, args = range_query(cols, feed, bounds, tag)
        if not self._pending.has(feed):
            return build(self._read(f"{sql} LIMIT ? OFFSET ?", [*args, limit, offset]))
        stored = build(self._read(f"{sql} LIMIT ?", [*args, offset + limit]))
        pending = self._pending.newest_first(feed, bounds, tag)
        return merge_newest_first(stored, pending, offset, limit, self._pending.keep(feed))

    async def read_many(
        self, feeds: Sequence[str], *, limit: int, bounds: Bounds | None = None, tag: str | None = None
    ) -> list[list[Entry]]:
        out: dict[str, list[Entry]] = {feed: [] for feed in feeds}
        heads, lowest = self._heads, None if bounds is None else bounds.lower()
        unique = list(out)
        if heads is not None and lowest is not None:  # skip feeds with nothing at or above the floor
            unique = [feed for feed in unique if heads.may_hold(feed, lowest)]
        newest = tag is None and limit > 0 and (bounds is None or bounds.upper() is None)
        asked = heads.answer(unique, lowest, limit, out) if heads is not None and newest else unique
        # Every feed's part is the same query with its own key (the first argument): built once.
        sql, args = range_query(f"feed, {ENTRY_COLS}", "", bounds, tag)
        part, rest = f"SELECT * FROM ({sql} LIMIT ?)", [*args[1:], limit]
        for start in range(0, len(asked), 50):  # one statement per 50 feeds: bounded SQL size
            batch = asked[start : start + 50]
            params = [x for feed in batch for x in (feed, *rest)]
            rows = self._read(" UNION ALL ".join([part] * len(batch)), params)
            for row, entry in zip(rows, entries_of([r[1:] for r in rows]), strict=True):
                out[row[0]].append(entry)
        if heads is not None and newest:
            for feed in asked:
                heads.learned(feed, out[feed], lowest, limit)
        for feed in unique:
            if self._pending.has(feed):
                pending = self._pending.newest_first(feed, bounds, tag)
                out[feed] = merge_newest_first(out[feed], pending, 0, limit, self._pending.keep(feed))
        return [out[feed] for feed in feeds]

    async def read_entries_up(self, feed: str, *, lowest: int, limit: int) -> list[Entry]:
        rows = self._read(
            f"SELECT {ENTRY_COLS} FROM entries WHERE feed=? AND id>=? ORDER BY id LIMIT ?",
            (feed, lowest, limit),
        )
        pending = self._pending.newest_first(feed, Bounds(gte=lowest), None)
        return merge_oldest_first(entries_of(rows), pending, limit)

    async def set_entry_columns(
        self, feeds: Sequence[str], activity_id: int, *, group_key: str, tags: Sequence[str]
    ) -> None:
        encoded = orjson.dumps(list(tags)).decode()
        pending = [(f, e) for f in feeds for e in self._pending.by_ids(f, [activity_id])]

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, pending)  # materialized first, so loading the log again cannot undo the update
            for feed in feeds:
                changing(conn, feed, [activity_id])
            conn.executemany(
                "UPDATE entries SET group_key=?, tags=? WHERE feed=? AND id=?",
                [(group_key, encoded, f, activity_id) for f in feeds],
            )

        await self._write(op)
        for feed, entry in pending:
            self._pending.discard(feed, [entry.id])

    async def get_entries(self, feed: str, ids: Sequence[int]) -> list[Entry]:
        if not ids:
            return []
        rows = self._read(
            f"SELECT {ENTRY_COLS} FROM entries WHERE feed=? AND id IN ({marks(len(ids))}) ORDER BY id DESC",
            [feed, *ids],
        )
        return merge_newest_first(entries_of(rows), self._pending.by_ids(feed, ids), 0, len(ids))

    async def mark(self, feed: str, ids: Sequence[int] | None, *, seen: bool, read: bool) -> None:
        sets = ", ".join(s for s, on in (("seen=1", seen), ("read=1", read)) if on)
        if not sets:
            return
        pending = (
            self._pending.newest_first(feed, None, None) if ids is None else self._pending.by_ids(feed, ids)
        )
        materialized = [(feed, e.marked(seen, read)) for e in pending]

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, materialized)  # so loading the log again cannot undo the marks
            changing(conn, feed, ids)
            if ids is None:
                conn.execute(f"UPDATE entries SET {sets} WHERE feed=?", (feed,))
            else:
                conn.executemany(f"UPDATE entries SET {sets} WHERE feed=? AND id=?", [(feed, i) for i in ids])

        await self._write(op)
        self._pending.discard(feed, [e.id for e in pending])
