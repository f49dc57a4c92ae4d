"""How the embedded store's connections cache pages, by the size of the database.

SQLite has a cost that grows with its page cache on databases under 1 GiB.  Balancing a B-tree
page whose new siblings are out of page-number order swaps them through a spare page number, the
lock-byte page (1 GiB / page size + 1).  The page cache then believes it holds a page that far out,
and the commit, which trims the cache to the database's size, walks every page it holds.  Timeline
inserts land all over one B-tree, so most merge commits pay it (seen with ``perf``: 45 % of a
commit loop's time in that walk, with 180 MB cached).  A database of 1 GiB or more reaches past
that page number and never pays it.

So a database under 1 GiB is memory-mapped whole and keeps a small page cache: a read of a page the
OS holds costs neither a copy nor a cache entry, and the walk stays short.  From 1 GiB up there is
no mapping and the cache bound is the configured one (``feeds_cache_mb``); the loop's connection
switches once the database grows past it (other connections at their next start).
``loadtest/feeds/bench_commit.py`` measures the commit cost by cache size.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

LOCK_BYTE_OFFSET = 1 << 30
SMALL_CACHE_MB = 16  # enough for the pages a merge cycle rewrites between checkpoints


class CachePlan(NamedTuple):
    cache_kib: int
    mmap_bytes: int

    def apply(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA cache_size=-{self.cache_kib}")  # negative: KiB, not pages
        conn.execute(f"PRAGMA mmap_size={self.mmap_bytes}")


def plan_for(db_bytes: int, cache_mb: int) -> CachePlan:
    if db_bytes < LOCK_BYTE_OFFSET:
        return CachePlan(min(cache_mb, SMALL_CACHE_MB) * 1024, LOCK_BYTE_OFFSET)
    return CachePlan(cache_mb * 1024, 0)


def db_bytes(conn: sqlite3.Connection) -> int:
    """The database's size as SQLite sees it (committed pages, whether in the file or the WAL)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int(pages) * int(size)
