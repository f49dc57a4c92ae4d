"""Where the loop connection's pages live, by the size of the store (a part of
:class:`~feeds.store.sqlite.SqliteStore`, kept apart to keep modules small):

* the cache plan: a store under 1 GiB is memory-mapped, a larger one read through SQLite's own
  page cache (:mod:`feeds.store.sqlite_cache`);
* a mapped store and its WAL are locked in memory by a side thread (:mod:`feeds.store.sqlite_resident`);
* a cached store that fits its cache is loaded into it after start (:mod:`feeds.store.sqlite_prewarm`).
"""

from __future__ import annotations

import asyncio
import sqlite3

from feeds.store.sqlite_cache import CachePlan, db_bytes, plan_for
from feeds.store.sqlite_prewarm import start_prewarm, stop_prewarm
from feeds.store.sqlite_resident import Resident


class Residency:
    def __init__(self, path: str, wal_cap: int, cache_mb: int, *, lock_pages: bool, prewarm: bool) -> None:
        self.cache_mb = cache_mb
        self.plan: CachePlan | None = None  # the loop connection's
        self.resident = Resident(path, wal_cap) if lock_pages else None
        self.prewarm = prewarm
        self.warming: asyncio.Task[None] | None = None

    def apply(self, conn: sqlite3.Connection) -> None:
        """Set up a new connection for the database's present size."""
        plan_for(db_bytes(conn), self.cache_mb).apply(conn)

    def replan(self, loop_conn: sqlite3.Connection) -> None:
        """Switch the loop connection's caching once the database has grown past 1 GiB."""
        plan = plan_for(db_bytes(loop_conn), self.cache_mb)
        if plan != self.plan:
            plan.apply(loop_conn)
            self.plan = plan
            if self.resident is not None:
                self.resident.wanted = plan.mmap_bytes > 0

    def start(self, loop_conn: sqlite3.Connection, *, loop_writes: bool) -> None:
        """``loop_writes``: the loop connection is the store's only writer (``normal`` durability);
        otherwise a loaded cache would not outlast the writer's next commit (see sqlite_prewarm)."""
        self.replan(loop_conn)
        if self.resident is not None:
            self.resident.start()
        if self.prewarm and loop_writes and self.plan is not None and self.plan.mmap_bytes == 0:
            self.warming = start_prewarm(loop_conn, self.cache_mb)

    @property
    def loading(self) -> bool:
        return self.warming is not None and not self.warming.done()

    async def close(self) -> None:
        await stop_prewarm(self.warming)
        if self.resident is not None:
            await asyncio.to_thread(self.resident.stop)
