"""Hybrid fan-out.

Write side: an activity added to feed F is pushed into the timelines of F's followers, unless F has
more than ``pull_threshold`` followers; then nothing is pushed and followers pull F at read time.

Read side: a timeline read takes ``offset + limit`` entries from the feed itself, then from every
pulled feed it follows, and heap-merges them newest first (duplicates, e.g. entries pushed before an
author crossed the threshold, are dropped).  It stops early: once the feed's own page is full, its
oldest entry is a floor, and pulled feeds are only asked for entries above it, so a pulled feed with
nothing newer costs one empty indexed read.  When the feed's own entries run out and the timeline is
at its cap (older entries were trimmed), the read falls back to pulling every followed feed below the
oldest retained entry, so paging past the cap still works.

Follower counts are cached per process for ``follower_count_ttl_s``: crossing the threshold takes
effect within that time, and duplicates from the switch are absorbed by the merge.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from feeds.config import FanoutConfig
from feeds.keys import FeedRef
from feeds.store.base import Bounds, Entry, Store


class Fanout:
    def __init__(
        self, store: Store, config: FanoutConfig, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._counts: dict[str, tuple[int, float]] = {}

    async def follower_count(self, feed_key: str) -> int:
        now = self._clock()
        cached = self._counts.get(feed_key)
        if cached is not None and cached[1] > now:
            return cached[0]
        count = await self._store.follower_count(feed_key)
        if len(self._counts) > 100_000:
            self._counts.clear()
        self._counts[feed_key] = (count, now + self._config.follower_count_ttl_s)
        return count

    def forget(self, feed_key: str) -> None:
        """Drop a cached count (after a follow or unfollow on this node)."""
        self._counts.pop(feed_key, None)

    async def is_pulled(self, feed_key: str) -> bool:
        return await self.follower_count(feed_key) > self._config.pull_threshold

    async def push_targets(self, feed_key: str) -> list[FeedRef]:
        """Followers whose timelines get this feed's new activities now (none for a pulled feed)."""
        if await self.is_pulled(feed_key):
            return []
        return [FeedRef.from_key(f.source) for f in await self._store.followers(feed_key)]

    async def read(
        self, feed: FeedRef, *, need: int, bounds: Bounds, tag: str | None, cap: int
    ) -> list[Entry]:
        """The newest ``need`` entries of ``feed``'s merged timeline within ``bounds``."""
        own = await self._store.read_entries(feed.key, limit=need, bounds=bounds, tag=tag)
        followings = await self._store.following(feed.key)
        if not followings:
            return own
        lists: list[Sequence[Entry]] = [own]
        floor = own[-1].id if len(own) == need else None
        pulled_bounds = bounds if floor is None else _raise_lower(bounds, floor + 1)
        pulled = [f.target for f in followings if await self.is_pulled(f.target)]
        for target in pulled:
            lists.append(await self._pull(target, need, pulled_bounds, tag))
        if len(own) < need and own and await self._at_cap(feed.key, cap):
            below = _lower_upper(bounds, own[-1].id - 1)
            for f in followings:
                if f.target not in pulled:
                    lists.append(await self._pull(f.target, need, below, tag))
        return list(_take(heapq.merge(*lists, key=lambda e: -e.id), need))

    async def _pull(self, target_key: str, need: int, bounds: Bounds, tag: str | None) -> list[Entry]:
        origin = FeedRef.from_key(target_key).feed_id
        got = await self._store.read_entries(target_key, limit=need, bounds=bounds, tag=tag)
        # Only what was posted to the followed feed itself travels (fan-out is not transitive).
        return [replace(e, origin=origin, group_key="") for e in got if e.origin is None]

    async def _at_cap(self, feed_key: str, cap: int) -> bool:
        return bool(await self._store.read_entries(feed_key, limit=1, offset=cap - 1))


def _raise_lower(bounds: Bounds, lowest: int) -> Bounds:
    current = bounds.lower()
    return Bounds(lt=bounds.lt, lte=bounds.lte, gte=lowest if current is None else max(current, lowest))


def _lower_upper(bounds: Bounds, highest: int) -> Bounds:
    current = bounds.upper()
    return Bounds(lte=highest if current is None else min(current, highest), gt=bounds.gt, gte=bounds.gte)


def _take(entries: Iterator[Entry], need: int) -> Iterator[Entry]:
    seen: set[int] = set()
    for entry in entries:
        if entry.id in seen:
            continue
        seen.add(entry.id)
        yield entry
        if len(seen) == need:
            return
