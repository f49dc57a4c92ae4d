"""Generate the feed benchmark dataset into a SQLite file (or Redis) through FeedService.

Shape (defaults from issue 4): --users 100k users; each follows ~--follows others, with a power-law
tail in how many (Pareto, alpha 2, capped at 20x the mean) and in whom (authors drawn Zipf-like, so
a few have very many followers and are pulled at read time); --activities 1M activities by uniformly
drawn authors (drawing them by popularity too would make the popular few post most of the time and
multiply the timeline entries), timestamps spread over the last --days days.  Every activity goes through the
real write path (store, fan-out to active followers), so the run also reports fan-out throughput.
All users are marked active (read just now) before posting, so fan-out pushes to everyone below
the pull threshold.  The full default size writes ~100M timeline entries: use smaller sizes on a
laptop (e.g. --users 10000 --activities 50000).

Usage: python3 loadtest/feeds/dataset.py --db feeds.db [--users N --follows F --activities M]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import time

from feeds.apps import App
from feeds.config import FanoutConfig
from feeds.service import FeedService
from feeds.store.base import Follow, Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

APP = App("1", "bench-key", "bench-secret-" + "x" * 32)


class Popularity:
    """Draws user indexes with P(rank r) ~ 1 / (r + 10) ** s: a long head of very popular authors."""

    def __init__(self, users: int, s: float, rng: random.Random) -> None:
        weights = [1 / (r + 10) ** s for r in range(users)]
        self._cum = list(itertools.accumulate(weights))
        self._order = list(range(users))
        rng.shuffle(self._order)
        self._rng = rng

    def draw(self) -> int:
        i = bisect.bisect_left(self._cum, self._rng.random() * self._cum[-1])
        return self._order[min(i, len(self._order) - 1)]


async def build(store: Store, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed)
    svc = FeedService(store, [APP], fanout=FanoutConfig(pull_threshold=args.pull_threshold))
    await svc.start()
    try:
        pop = Popularity(args.users, args.zipf, rng)
        now_us = svc.now_us()
        started = time.perf_counter()
        follows = 0
        batch: list[Follow] = []
        for user in range(args.users):
            count = min(int(args.follows / 2 * rng.paretovariate(2.0)), args.follows * 20, args.users - 1)
            targets = {pop.draw() for _ in range(count)} - {user}
            batch += [Follow(f"1/timeline:{user}", f"1/user:{t}", now_us) for t in targets]
            if len(batch) >= 20_000:
                follows += len(batch)
                await store.follow(batch)
                batch = []
            await store.set_last_read(f"1/timeline:{user}", now_us)
        follows += len(batch)
        await store.follow(batch)
        follow_s = time.perf_counter() - started

        sem = asyncio.Semaphore(args.concurrency)
        span_us = int(args.days * 86_400e6)

        async def post(n: int) -> None:
            author = rng.randrange(args.users)
            when = (now_us - rng.randrange(span_us)) / 1e6
            activity = {
                "actor": f"user:{author}",
                "verb": "post",
                "object": f"post:{n}",
                "foreign_id": f"post:{n}",
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)),
                "likes": rng.randrange(100),
            }
            async with sem:
                await svc.add_activities(APP, svc.feed(APP, "user", str(author)), [activity])

        started = time.perf_counter()
        await asyncio.gather(*(post(n) for n in range(args.activities)))
        post_s = time.perf_counter() - started
        counts = [await store.follower_count(f"1/user:{u}") for u in range(args.users)]
        return {
            "users": args.users,
            "follows": follows,
            "follow_s": follow_s,
            "activities": args.activities,
            "post_s": post_s,
            "activities_per_s": args.activities / post_s,
            "max_followers": max(counts),
            "mean_followers": sum(counts) / args.users,
            "timeline_entries_per_s": sum(counts) / args.users * args.activities / post_s,
        }
    finally:
        await svc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="feeds-bench.db", help="SQLite file (ignored with --redis)")
    parser.add_argument("--redis", default=None, help="redis URL; keys under --prefix")
    parser.add_argument("--prefix", default="feeds-bench:")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--follows", type=int, default=100, help="mean follows per user")
    parser.add_argument("--activities", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--pull-threshold", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    store: Store = RedisStore(args.redis, prefix=args.prefix) if args.redis else SqliteStore(args.db)
    stats = asyncio.run(build(store, args))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}))


if __name__ == "__main__":
    main()
