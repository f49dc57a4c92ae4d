"""In-process cost of a post over a dataset from dataset.py: ``FeedService.add_activities`` to
``user:<u>`` of random users (each pushed to its active followers), as api.py calls it, without HTTP
or a notifier.

The dataset is copied first (posts change it).  Posts run one after another; the CPU of every
store merge they cause is included, the final merge of what is still pending too, so the figure
is the whole cost of the pushes.  Reports CPU time per post and per pushed timeline entry
(``time.process_time``: pin the process, e.g. ``taskset -c 1``).

``--merge-every N`` merges after every N posts instead of on the store's own timer, and reports the
CPU of those merges apart: a node at 150 posts/s with a 10 s window merges every 1500 posts, so
comparing N says what a longer window saves per entry; of that, the CPU of the event loop's own
thread apart (``thread_time``: without the WAL keeper's checkpoints).  ``--merge-every 1500,6000``
takes turns between the windows in one process and prints each merge's CPU per entry, so both see
the same file, cache and machine (between runs the same code varied by a quarter here).
``--in-flight N`` keeps N posts awaiting at once, as N concurrent requests would (the store's group
commit then writes several posts in one commit); the default, 1, posts one after another.
``system_cpu_share`` is the kernel's part of the timed CPU (WAL and checkpoint writes, page faults).
``--cache-mb`` sets the store's page cache (the node's ``feeds_cache_mb``); the bench waits until the
cache is loaded before it posts.

Usage: taskset -c 1 python3 loadtest/feeds/bench_write.py --db feeds.db --users 10000 [--posts 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

from dataset import APP, merge_pending

from feeds.config import FanoutConfig
from feeds.service import FeedService
from feeds.store.sqlite import CACHE_MB, SqliteStore
from feeds.store.sqlite_merge import MAX_PENDING, MERGE_AFTER_S, MERGE_ROWS


def _entries(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])


async def measure(args: argparse.Namespace, path: str) -> dict[str, Any]:
    rng = random.Random(args.seed)
    never = 1 << 40  # with --merge-every, only the bench merges
    windows = [w for w in map(int, args.merge_every.split(",")) if w > 0]
    windowed = bool(windows)
    store = SqliteStore(
        path,
        cache_mb=args.cache_mb,
        merge_rows=never if windowed else MERGE_ROWS,
        merge_after_s=float(never) if windowed else MERGE_AFTER_S,
        max_pending=never if windowed else MAX_PENDING,
    )
    svc = FeedService(store, [APP], fanout=FanoutConfig(pull_threshold=args.pull_threshold))
    await svc.start()
    for _ in range(3600):  # loading a 6 GB file takes about a minute here; go on after 30 minutes
        if not store.cache_loading:
            break
        await asyncio.sleep(0.5)

    async def post(i: int) -> None:
        user = str(rng.randrange(args.users))
        data = {"actor": f"user:{user}", "verb": "post", "object": f"post:{i}", "foreign_id": f"bw:{i}"}
        await svc.add_activities(APP, svc.feed(APP, "user", user), [data])

    try:
        for i in range(args.warmup):
            await post(-1 - i)
        await merge_pending(store)
        before = _entries(path)
        c0, merging, merging_loop = time.process_time(), 0.0, 0.0
        t0 = os.times()
        print("timed posts begin", file=sys.stderr, flush=True)  # e.g. to attach a profiler now

        async def merge_timed(window: int) -> None:
            nonlocal merging, merging_loop
            await svc.drain()
            m0, t0, entries = time.process_time(), time.thread_time(), store.pending_entries
            await merge_pending(store)
            spent, spent_loop = time.process_time() - m0, time.thread_time() - t0
            merging, merging_loop = merging + spent, merging_loop + spent_loop
            if len(windows) > 1 and entries:
                row = {
                    "merge_after_posts": window,
                    "entries": entries,
                    "cpu_us_per_entry": round(spent / entries * 1e6, 2),
                    "loop_cpu_us_per_entry": round(spent_loop / entries * 1e6, 2),
                }
                print(json.dumps(row), flush=True)

        since = 0
        if args.in_flight > 1:
            await post_concurrently(post, args.posts, args.in_flight)
            since = args.posts
        else:
            for i in range(args.posts):
                await post(i)
                since += 1
                if windowed and since == windows[0]:
                    await merge_timed(since)
                    windows.append(windows.pop(0))
                    since = 0
        await merge_timed(since)
        cpu = time.process_time() - c0
        t1 = os.times()
    finally:
        await svc.close()
    # Entries trimmed meanwhile are not counted: with the dataset's caps far above its timelines'
    # lengths (the default), none are.
    pushed = _entries(path) - before
    return {
        "posts": args.posts,
        "entries_written": pushed,
        "cpu_ms_per_post": cpu / args.posts * 1000,
        "cpu_us_per_entry": cpu / max(pushed, 1) * 1e6,
        "entries_per_cpu_s": pushed / cpu,
        "merge_cpu_us_per_entry": merging / max(pushed, 1) * 1e6,
        "merge_loop_cpu_us_per_entry": merging_loop / max(pushed, 1) * 1e6,
        "system_cpu_share": (t1.system - t0.system) / max(cpu, 1e-9),
    }


async def post_concurrently(post: Callable[[int], Awaitable[None]], posts: int, in_flight: int) -> None:
    """Posts 0..posts-1 with ``in_flight`` awaiting at a time, as concurrent requests would be."""
    numbers = iter(range(posts))

    async def worker() -> None:
        for i in numbers:  # one shared iterator: each number is taken once
            await post(i)

    await asyncio.gather(*(worker() for _ in range(in_flight)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="feeds-bench.db")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pull-threshold", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--merge-every",
        default="0",
        help="posts per merge (0: the store's timer); a list (1500,6000) takes turns, each merge printed",
    )
    parser.add_argument("--cache-mb", type=int, default=CACHE_MB)
    parser.add_argument(
        "--in-flight", type=int, default=1, help="posts awaiting at once (not with --merge-every)"
    )
    args = parser.parse_args()
    if args.in_flight > 1 and args.merge_every != "0":
        parser.error("--in-flight takes the store's own merge timer, not --merge-every")
    with tempfile.TemporaryDirectory(prefix="feeds-write-") as tmp:
        path = str(Path(tmp) / "feeds.db")
        shutil.copyfile(args.db, path)
        stats = asyncio.run(measure(args, path))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}))


if __name__ == "__main__":
    main()
