"""Fan-out throughput into timelines (timeline entries written per second), through FeedService.

Two shapes, both on a fresh SqliteStore (or RedisStore with --redis URL, under a unique prefix that is
deleted afterwards):

* ``star``:   one author with --followers active followers; --posts sequential posts.
* ``crowd``:  --authors authors with --per-author followers each; every author posts once, with
  --concurrency posts in flight (exercises group commit).

Usage: python3 loadtest/feeds/bench_fanout.py [--followers 10000 --posts 20] [--redis redis://127.0.0.1:6379]
[--shapes crowd]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing
from pathlib import Path

from dataset import merge_pending

from feeds.apps import App
from feeds.config import FanoutConfig
from feeds.service import FeedService
from feeds.store.base import Follow, Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

APP = App("1", "bench", "b" * 40)


async def _setup_follows(store: Store, pairs: list[tuple[str, str]], now_us: int) -> None:
    for start in range(0, len(pairs), 5000):
        chunk = pairs[start : start + 5000]
        await store.follow([Follow(f"1/timeline:{s}", f"1/user:{t}", now_us) for s, t in chunk])
    for source in {s for s, _ in pairs}:
        await store.set_last_read(f"1/timeline:{source}", now_us)


async def star(svc: FeedService, followers: int, posts: int) -> dict[str, float]:
    await _setup_follows(svc.store, [(f"f{i}", "star") for i in range(followers)], svc.now_us())
    feed = svc.feed(APP, "user", "star")
    started = time.perf_counter()
    for i in range(posts):
        await svc.add_activities(APP, feed, [{"actor": "star", "verb": "post", "object": f"o:{i}"}])
    await svc.drain()  # pushes above inline_fanout finish in the background: count them in
    await merge_pending(svc.store)
    elapsed = time.perf_counter() - started
    return {
        "entries": followers * posts,
        "seconds": elapsed,
        "entries_per_s": followers * posts / elapsed,
        "post_ms": elapsed / posts * 1000,
    }


async def crowd(svc: FeedService, authors: int, per_author: int, concurrency: int) -> dict[str, float]:
    pairs = [
        (f"c{(a * 7919 + k) % (authors * 10)}", f"a{a}") for a in range(authors) for k in range(per_author)
    ]
    await _setup_follows(svc.store, pairs, svc.now_us())
    sem = asyncio.Semaphore(concurrency)

    async def post(a: int) -> None:
        async with sem:
            await svc.add_activities(
                APP, svc.feed(APP, "user", f"a{a}"), [{"actor": f"a{a}", "verb": "p", "object": "o"}]
            )

    started = time.perf_counter()
    await asyncio.gather(*(post(a) for a in range(authors)))
    await svc.drain()
    await merge_pending(svc.store)
    elapsed = time.perf_counter() - started
    entries = authors * per_author
    return {"entries": entries, "seconds": elapsed, "entries_per_s": entries / elapsed}


def _timeline_rows(path: str) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM entries WHERE feed LIKE '1/timeline:%'").fetchone()[0])


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--followers", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=20)
    parser.add_argument("--authors", type=int, default=2000)
    parser.add_argument("--per-author", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis", default=None, help="redis URL; default: SQLite in a temporary directory")
    parser.add_argument("--shapes", default="star,crowd", help="comma-separated subset of star,crowd")
    args = parser.parse_args()
    results = {}
    for shape in args.shapes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            prefix = f"bench-feeds-{uuid.uuid4().hex}:"
            store: Store = (
                RedisStore(args.redis, prefix=prefix) if args.redis else SqliteStore(str(Path(tmp) / "f.db"))
            )
            svc = FeedService(store, [APP], fanout=FanoutConfig(pull_threshold=1_000_000))
            await svc.start()
            try:
                if shape == "star":
                    results[shape] = await star(svc, args.followers, args.posts)
                else:
                    results[shape] = await crowd(svc, args.authors, args.per_author, args.concurrency)
                if isinstance(store, SqliteStore):  # the figure counts only entries really written
                    results[shape]["written"] = _timeline_rows(str(Path(tmp) / "f.db"))
                    if results[shape]["written"] != results[shape]["entries"]:
                        raise SystemExit(f"{shape}: {results[shape]} - entries missing from the timelines")
            finally:
                await svc.drain()
                if isinstance(store, RedisStore):
                    keys = [k async for k in store.r.scan_iter(match=f"{prefix}*", count=1000)]
                    for start in range(0, len(keys), 1000):
                        await store.r.delete(*keys[start : start + 1000])
                await svc.close()
            print(shape, json.dumps({k: round(v, 3) for k, v in results[shape].items()}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
