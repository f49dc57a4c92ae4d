"""Loading a large store into SQLite's page cache after start, between requests.

A store of 1 GiB or more is read through SQLite's own page cache (:mod:`feeds.store.sqlite_cache`),
which starts empty.  Until a page has been read once, a read that needs it asks the OS for it on the
event loop: a copy from the OS page cache, or a disk read where the host has taken the file back.
On the full benchmark dataset (5.47 GB, 100k users read at random), a node's resident memory was
1.1 GB after 70 s of load: nearly every timeline read of a run was a first read of its pages.  At
1500 requests/s that node fell behind, and the same node with its cache loaded first kept up
(``docs/BENCHMARKS.md``, ninth session).

:class:`Prewarm` walks the B-trees the hot paths read, in key order, one slice of rows per step: a
slice asks for the row ``ROWS`` past its cursor, which reads every page on the way, and one that
finds none has walked the tree's tail.  It runs on the loop's own connection, because the page
cache belongs to a connection.  After each slice it lets whatever is ready run; if that took more
than a moment (requests are coming in), it also sleeps as long as the slice took, so requests keep
at least half of the loop while it runs.  On an idle node it goes at full speed.

It is started only when the whole file fits the cache bound with a tenth to spare (a smaller cache
would evict what the walk loaded first), and only with the loop writer (``normal`` durability),
whose reads and writes share the connection.  SQLite empties a connection's page cache when it
finds that another connection has committed since its last read (``pagerBeginReadTransaction``;
seen here with strace: a scan of a 1057-page table read 1058 pages again after another connection
committed one row, and 1 page after the scanning connection's own commit).  With ``full``
durability a thread writes through a connection of its own, so a loaded cache would not outlast
the next commit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from feeds.store.sqlite_cache import db_bytes

log = logging.getLogger(__name__)
ROWS = 8192  # rows per slice: about 2 ms of the loop on the full dataset here
BUSY_S = 0.0002  # the loop ran other work for longer than this between two slices: it is not idle

# Each B-tree as (what to name in FROM, its key columns in order), the read path's small ones first
# and the timelines, most of the file, last.  activities_fid is left out: a partial index can only
# be walked under its condition, and only writes with a foreign_id use it.
TREES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("feed_state", ("feed",)),
    ("follower_counts", ("feed",)),
    ("follower_counts INDEXED BY follower_counts_n", ("n", "feed")),
    ("follows INDEXED BY follows_source", ("source", "created_us", "target")),
    ("activities", ("app", "id")),
    ("follows INDEXED BY follows_target", ("target", "created_us", "source")),
    ("follows", ("source", "target")),
    ("placements", ("app", "id", "feed")),
    ("entries", ("feed", "id")),
)

MIB = 1 << 20
# SQLite counts its headers for each cached page against the bound: with the full dataset's 5.47 GB
# loaded, the node's resident memory was 5.86 GB.  A file that fills the bound exactly would have
# its first trees, the small hot ones, evicted by the last.
SPARE = 1.1
Read = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class Prewarm:
    """``read`` runs one statement on the connection whose cache is to be loaded."""

    def __init__(
        self, read: Read, *, rows: int = ROWS, trees: Sequence[tuple[str, tuple[str, ...]]] = TREES
    ) -> None:
        self._read = read
        self._rows = rows
        self._trees = trees
        self.slices = 0
        self.done = False

    async def run(self) -> None:
        started = time.monotonic()
        try:
            for tree, keys in self._trees:
                await self._walk(tree, keys)
        except sqlite3.Error as exc:  # a cache left cold is slower, not wrong
            log.warning("feed store: loading the page cache stopped: %s", exc)
            return
        self.done = True
        took = time.monotonic() - started
        log.info("feed store: page cache loaded (%d slices in %.1f s)", self.slices, took)

    async def _walk(self, tree: str, keys: tuple[str, ...]) -> None:
        cols = ", ".join(keys)
        tail = f"ORDER BY {cols} LIMIT 1 OFFSET {self._rows - 1}"
        first = f"SELECT {cols} FROM {tree} {tail}"
        after = f"SELECT {cols} FROM {tree} WHERE ({cols}) > ({', '.join('?' * len(keys))}) {tail}"
        cursor: tuple[Any, ...] | None = None
        while True:
            began = time.perf_counter()
            rows = self._read(first, ()) if cursor is None else self._read(after, cursor)
            self.slices += 1
            if not rows:
                return  # fewer than a slice's rows were left, and this slice walked them
            cursor = rows[0]
            took = time.perf_counter() - began
            await asyncio.sleep(0)  # whatever became ready during the slice runs now
            if time.perf_counter() - began - took > BUSY_S:  # requests are waiting: as much again to them
                await asyncio.sleep(took)


def start_prewarm(conn: sqlite3.Connection, cache_mb: int) -> asyncio.Task[None] | None:
    """A walk on the running loop, loading ``conn``'s cache (the caller's is a store read through
    SQLite's cache, not mapped), when the file fits it whole with room for SQLite's page headers;
    None otherwise."""
    size = db_bytes(conn)
    if size * SPARE > cache_mb * MIB:
        log.info(
            "feed store: %d MB does not fit its page cache with a tenth to spare (feeds_cache_mb = %d): "
            "not loaded ahead",
            size // MIB,
            cache_mb,
        )
        return None
    log.info("feed store: loading %d MB into the page cache, between requests", size // MIB)
    walk = Prewarm(lambda sql, args: conn.execute(sql, args).fetchall())
    return asyncio.get_running_loop().create_task(walk.run(), name="feeds-sqlite-prewarm")


async def stop_prewarm(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
