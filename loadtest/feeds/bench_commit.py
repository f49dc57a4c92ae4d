"""What one SQLite commit of a merge-sized chunk costs, by page cache size.

A merge chunk inserts a few rows at the newest end of a few consecutive timelines and commits.  On
a database under 1 GiB the commit costs more the more pages the connection has cached: when a
transaction splits a B-tree page and the new pages are out of page-number order, SQLite swaps them
through a temporary page number, the lock-byte page (1 GiB / page size + 1); that leaves the page
cache believing it holds a page that far out, and the commit's truncation of the cache to the
database's size then walks every cached page.  A database of 1 GiB or more does not pay it (its size
is past that page number).  This measures the CPU of the inserts and of the COMMIT alone, on a copy
of a dataset file, for each cache size, with the cache warmed first by reading every timeline.

    python3 loadtest/feeds/bench_commit.py --db /path/lead-10k.db --caches 2,64,512

The node's default cache is ``feeds_cache_mb`` (512).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(
    path: Path, cache_mb: int, commits: int, feeds_per: int, rows_per: int, trim: int, seed: int
) -> dict[str, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA cache_size=-{cache_mb * 1024}")
    feeds = [row[0] for row in conn.execute("SELECT DISTINCT feed FROM entries ORDER BY feed")]
    if trim:  # as the node's cap trims do: free pages that later splits take back, out of order
        conn.execute("BEGIN IMMEDIATE")
        for feed in feeds:
            conn.execute(
                "DELETE FROM entries WHERE feed=? AND id IN "
                "(SELECT id FROM entries WHERE feed=? ORDER BY id LIMIT ?)",
                (feed, feed, trim),
            )
        conn.execute("COMMIT")
    conn.execute("SELECT count(*), sum(length(origin)) FROM entries").fetchone()  # warm the cache
    rng = random.Random(seed)
    next_id = (1 << 62) + rng.randrange(1 << 40)
    insert_s = commit_s = 0.0
    for _ in range(commits):
        start = rng.randrange(len(feeds) - feeds_per)
        rows = []
        for feed in feeds[start : start + feeds_per]:
            for _ in range(rows_per):
                next_id += 1
                rows.append((feed, next_id, "user:0", None, "", "[]", 0, 0))
        t0 = cpu()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?,?,?)", rows)
        t1 = cpu()
        conn.execute("COMMIT")
        t2 = cpu()
        insert_s += t1 - t0
        commit_s += t2 - t1
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return {
        "cache_mb": cache_mb,
        "db_pages": pages,
        "lock_byte_page": (1 << 30) // page_size + 1,
        "commits": commits,
        "rows_per_commit": feeds_per * rows_per,
        "trimmed_per_feed": trim,
        "insert_ms_per_commit": round(insert_s / commits * 1000, 3),
        "commit_ms_per_commit": round(commit_s / commits * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a SQLite dataset file from dataset.py (copied)")
    parser.add_argument("--caches", default="2,64,512", help="page cache sizes in MiB, comma-separated")
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--feeds", type=int, default=11, help="consecutive timelines per commit")
    parser.add_argument("--rows", type=int, default=8, help="rows per timeline per commit")
    parser.add_argument(
        "--trim", type=int, default=0, help="first delete each timeline's N oldest entries (free pages)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for cache_mb in (int(c) for c in args.caches.split(",")):
            copy = Path(tmp) / "bench.db"
            shutil.copyfile(args.db, copy)
            started = time.monotonic()
            result = run(copy, cache_mb, args.commits, args.feeds, args.rows, args.trim, seed=cache_mb)
            result["wall_s"] = round(time.monotonic() - started, 1)
            print(json.dumps(result), flush=True)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{copy}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
