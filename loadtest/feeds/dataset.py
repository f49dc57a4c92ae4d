"""Generate the feed benchmark dataset into a SQLite file (or Redis).

Shape (defaults from issue 4): --users 100k users; each follows ~--follows others, with a power-law
tail in how many (Pareto, alpha 2, capped at 20x the mean) and in whom (authors drawn Zipf-like, so
a few have very many followers and are pulled at read time); --activities 1M activities by uniformly
drawn authors (drawing them by popularity too would make the popular few post most of the time and
multiply the timeline entries), timestamps spread over the --days days before --now.  All users
are marked active (read at --now), so fan-out pushes to every follower of an author at or below
the pull threshold.

Two ways to write it, leaving the same rows for the same arguments (compared by
tests/feeds/test_dataset_bulk.py):

* default: every activity goes through the real write path (``FeedService.add_activities``: store,
  fan-out), so the run also reports fan-out throughput; ~25k timeline entries/s, fine up to ~10k
  users.  Works with SQLite and Redis.
* ``--bulk`` (SQLite, new file only, see ``bulk_load.py``): the same rows written set-based, ~5
  minutes for the full size (61M timeline entries).  One difference: the write path trims
  timelines lazily (``feeds.store.trim``), so its timelines may keep a few entries beyond the cap,
  all older than the kept ones; bulk timelines hold exactly the newest ``max_length``.

Both modes draw the follow graph and the activities from --seed with the same code, and each
activity gets its own millisecond and an id minted from that millisecond and its index, so ids are
identical too (the write path is handed them through ``PlannedIds``).

Usage: python3 loadtest/feeds/dataset.py --db feeds.db [--bulk] [--users N --follows F --activities M]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from feeds.activity import Activity, format_time
from feeds.apps import App
from feeds.config import DEFAULT_GROUPS, FanoutConfig, FeedGroup
from feeds.ids import LOW_BITS, IdGenerator
from feeds.service import FeedService
from feeds.store.base import Follow, Store
from feeds.store.redis import RedisStore
from feeds.store.sqlite import SqliteStore

APP = App("1", "bench-key", "bench-secret-" + "x" * 32)
_LOW_MASK = (1 << LOW_BITS) - 1


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


@dataclass(frozen=True, slots=True)
class Post:
    author: int
    data: dict[str, Any]  # what a client sends
    activity: Activity  # what the service stores for it, id included


def feed_groups(max_length: int | None) -> tuple[FeedGroup, ...]:
    if max_length is None:
        return DEFAULT_GROUPS
    return tuple(replace(g, max_length=max_length) for g in DEFAULT_GROUPS)


def draw_follows(rng: random.Random, args: argparse.Namespace) -> Iterator[list[int]]:
    """For each user in index order, the users it follows (sorted indexes)."""
    pop = Popularity(args.users, args.zipf, rng)
    for user in range(args.users):
        count = min(int(args.follows / 2 * rng.paretovariate(2.0)), args.follows * 20, args.users - 1)
        yield sorted({pop.draw() for _ in range(count)} - {user})


def draw_posts(rng: random.Random, args: argparse.Namespace) -> Iterator[Post]:
    """The activities in posting order; draw after ``draw_follows`` has been consumed."""
    now_us = args.now * 1_000_000
    span_us = int(args.days * 86_400e6)
    if args.activities * 4 > span_us // 1000:
        raise SystemExit("--days too short: every activity needs a millisecond of its own")
    used_ms: set[int] = set()
    for n in range(args.activities):
        author = rng.randrange(args.users)
        likes = rng.randrange(100)
        while True:  # one activity per millisecond: its id is then unique whatever the low bits
            data = {
                "actor": f"user:{author}",
                "verb": "post",
                "object": f"post:{n}",
                "foreign_id": f"post:{n}",
                "time": format_time(now_us - rng.randrange(span_us)),
                "likes": likes,
            }
            act = Activity.from_json(data, now_us=now_us)
            if act.time_us // 1000 not in used_ms:
                break
        used_ms.add(act.time_us // 1000)
        yield Post(author, data, act.with_id(((act.time_us // 1000) << LOW_BITS) | (n & _LOW_MASK)))


class PlannedIds(IdGenerator):
    """Hands the write path the ids ``draw_posts`` minted, looked up by activity time (unique)."""

    def __init__(self) -> None:
        super().__init__(node=0)
        self.planned: dict[int, int] = {}

    def new_id(self, time_us: int) -> int:
        return self.planned.pop(time_us)


async def merge_pending(store: Store) -> None:
    """Merge a SQLite store's pending pushes now: benchmarks count them until they are written."""
    merge = getattr(store, "merge_pending", None)  # stores without pending pushes lack it
    if merge is not None:
        await merge()


async def build(store: Store, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed)
    now_us = args.now * 1_000_000
    svc = FeedService(
        store,
        [APP],
        feed_groups(args.max_length),
        fanout=FanoutConfig(pull_threshold=args.pull_threshold),
        clock=lambda: float(args.now),
    )
    ids = PlannedIds()
    svc._ids = ids  # FeedService has no seam for its id source; deterministic ids need one
    await svc.start()
    try:
        started = time.perf_counter()
        follows = 0
        batch: list[Follow] = []
        for user, targets in enumerate(draw_follows(rng, args)):
            batch += [Follow(f"1/timeline:{user}", f"1/user:{t}", now_us) for t in targets]
            if len(batch) >= 20_000:
                follows += len(batch)
                await store.follow(batch)
                batch = []
            await store.set_last_read(f"1/timeline:{user}", now_us)
        follows += len(batch)
        await store.follow(batch)
        follow_s = time.perf_counter() - started

        posts = draw_posts(rng, args)

        async def worker() -> None:
            for post in posts:  # shared by the workers: at most --concurrency posts in flight
                ids.planned[post.activity.time_us] = post.activity.id
                feed = svc.feed(APP, "user", str(post.author))
                (stored,) = await svc.add_activities(APP, feed, [post.data])
                if stored["id"] != str(post.activity.id):
                    raise RuntimeError(f"activity {post.data['foreign_id']} stored as {stored['id']}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        await svc.drain()  # background pushes of large fan-outs are part of the work
        await merge_pending(store)  # so are the SQLite store's pending pushes
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
            "pulled_authors": sum(c > args.pull_threshold for c in counts),
            "timeline_entries_per_s": sum(c for c in counts if c <= args.pull_threshold)
            / args.users
            * args.activities
            / post_s,
        }
    finally:
        await svc.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", default="feeds-bench.db", help="SQLite file (ignored with --redis)")
    p.add_argument("--redis", default=None, help="redis URL; keys under --prefix")
    p.add_argument("--prefix", default="feeds-bench:")
    p.add_argument("--bulk", action="store_true", help="set-based load into a new SQLite file")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--follows", type=int, default=100, help="mean follows per user")
    p.add_argument("--activities", type=int, default=1_000_000)
    p.add_argument("--days", type=float, default=30.0)
    p.add_argument("--now", type=int, default=None, help="'now' in Unix seconds (default: the clock)")
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--pull-threshold", type=int, default=10_000)
    p.add_argument("--max-length", type=int, default=None, help="timeline cap (default: the groups')")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seed", type=int, default=1)
    return p


def main() -> None:
    args = parser().parse_args()
    if args.now is None:
        args.now = int(time.time())
    if args.bulk:
        if args.redis:
            raise SystemExit("--bulk writes SQLite only")
        from bulk_load import build_bulk  # a sibling script module, like serve.py's import of this one

        stats = build_bulk(args.db, args)
    else:
        store: Store = RedisStore(args.redis, prefix=args.prefix) if args.redis else SqliteStore(args.db)
        stats = asyncio.run(build(store, args))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}))


if __name__ == "__main__":
    main()
