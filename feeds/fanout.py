"""Hybrid fan-out.

Write side: an activity added to feed F is pushed into the timelines of F's *active* followers
(read within ``inactive_after_s``), unless F has more than ``pull_threshold`` followers; then nothing
is pushed and followers pull F at read time.

Inactive followers: every read of a feed that follows something records its last-read time (written
at most every ``inactive_after_s / 10``).  A read that finds the feed inactive first marks it active,
then backfills it from every followed feed with the entries newer than the moment it went inactive
(less a minute of grace), then reads as usual.  Marking before pulling closes the race with a
concurrent post: either the post sees the feed active and pushes, or it was stored before the pull.

Read side: a timeline read takes ``offset + limit`` entries from the feed itself, then from every
pulled feed it follows, and heap-merges them newest first (duplicates, e.g. entries pushed before an
author crossed the threshold, are dropped).  It stops early: once the feed's own page is full, its
oldest entry is a floor, and pulled feeds are only asked for entries above it, so a pulled feed with
nothing newer costs one empty indexed read.  Below the oldest entry the cap keeps, a timeline is
incomplete (trimmed, or holding stragglers a lazy trim left or a backdated post added), so a page
that reaches below it also pulls every followed feed from there down: paging past the cap works.

A read learns which followed feeds are pulled, how many it follows and when it was last read in one
store round trip (:meth:`Store.read_plan`, live follower counts); the full list of followings is
only fetched on the rare paths (backfill, reads past the cap).  The write side checks the live count
too, in the same store operation that pushes (:meth:`Store.add_and_push`); duplicates from crossing
the threshold are absorbed by the merge.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from operator import itemgetter

from feeds.config import FanoutConfig
from feeds.ids import LOW_BITS
from feeds.keys import FeedRef
from feeds.store.base import Bounds, Entry, ReadPlan, Store

_ID = itemgetter(0)  # an Entry's id
SORT_UP_TO = 4  # merge by sorting while the candidates number at most this many pages


class Fanout:
    def __init__(
        self,
        store: Store,
        config: FanoutConfig,
        *,
        now_us: Callable[[], int],
    ) -> None:
        self._store = store
        self._config = config
        self._now_us = now_us
        self._inactive_us = int(config.inactive_after_s * 1_000_000)

    def push_since_us(self) -> int:
        """Followers last read at or after this time are active: new activities are pushed to them."""
        return self._now_us() - self._inactive_us

    async def all_followers(self, feed_key: str) -> list[FeedRef]:
        """Every follower (removals must reach entries pushed while a follower was active)."""
        return [FeedRef.from_key(f.source) for f in await self._store.followers(feed_key)]

    async def mark_active(self, feed_key: str) -> None:
        await self._store.set_last_read(feed_key, self._now_us())

    async def _refresh(self, feed: FeedRef, plan: ReadPlan, cap: int) -> None:
        now, last = self._now_us(), plan.last_read_us
        if last is not None and now - last < self._inactive_us // 10:
            return
        await self._store.set_last_read(feed.key, now)
        if last is not None and now - last <= self._inactive_us:
            return  # it was active: pushes reached it
        cutoff_us = 0 if last is None else max(0, last + self._inactive_us - 60_000_000)
        lower = Bounds(gte=(cutoff_us // 1000) << LOW_BITS)
        targets = await self._pushed_targets(feed.key, plan)
        pulled = await self._pull_many(targets, self._config.default_copy_limit, lower, None)
        missed = [entry for entries in pulled for entry in entries]
        if missed:
            await self._store.add_entries([feed.key], missed, cap)

    async def _pushed_targets(self, feed_key: str, plan: ReadPlan) -> list[str]:
        """The followed feeds that push to this one (the rare paths: backfill, reads past the cap)."""
        pulled = set(plan.pulled)
        return [f.target for f in await self._store.following(feed_key) if f.target not in pulled]

    async def read(
        self, feed: FeedRef, *, need: int, bounds: Bounds, tag: str | None, cap: int, slim: bool = False
    ) -> list[Entry]:
        """The newest ``need`` entries of ``feed``'s merged timeline within ``bounds``; ``slim``:
        the caller uses only ids and origins (see :meth:`Store.read_entries`)."""
        plan = await self._store.read_plan(feed.key, self._config.pull_threshold)
        if not plan.following:
            return await self._store.read_entries(feed.key, limit=need, bounds=bounds, tag=tag, slim=slim)
        await self._refresh(feed, plan, cap)
        own = await self._store.read_entries(feed.key, limit=need, bounds=bounds, tag=tag, slim=slim)
        lists: list[Sequence[Entry]] = [own]
        floor = own[-1].id if len(own) == need else None
        pulled_bounds = bounds if floor is None else _raise_lower(bounds, floor + 1)
        lists += await self._pull_many(plan.pulled, need, pulled_bounds, tag)
        # Below the cap's oldest kept entry the timeline is not to be trusted: trimmed, or holding a
        # few stragglers (lazy trims, backdated posts).  A page that reaches there pulls the pushing
        # feeds too.  A first page (no upper bound, need <= cap) never does, so costs nothing here.
        if len(own) < need or bounds.upper() is not None:
            boundary = await self._cap_boundary(feed.key, cap)
            if boundary is not None and (len(own) < need or own[-1].id < boundary):
                below = _lower_upper(bounds, boundary - 1)
                lists += await self._pull_many(await self._pushed_targets(feed.key, plan), need, below, tag)
        if len(lists) == 1:
            return own  # the common case: one feed's entries are already newest first and unique
        return _newest(lists, need)

    async def read_up(self, feed: FeedRef, *, lowest: int, need: int) -> list[Entry]:
        """Oldest first: the ``need`` entries of ``feed``'s merged timeline nearest above ``lowest``
        (inclusive), from the feed itself and the pulled feeds it follows.  Aggregated reads use it to
        see what lies just above a cursor.  The past-the-cap fallback of :meth:`read` is not mirrored:
        above a cursor that deep, only the retained timeline and pulled feeds are seen."""
        lists: list[Sequence[Entry]] = [
            await self._store.read_entries_up(feed.key, lowest=lowest, limit=need)
        ]
        plan = await self._store.read_plan(feed.key, self._config.pull_threshold)
        for target in plan.pulled:
            got = await self._store.read_entries_up(target, lowest=lowest, limit=need)
            lists.append(_travelling(target, got))
        return _take(heapq.merge(*lists, key=_ID), need)

    async def _pull_many(
        self, targets: Sequence[str], need: int, bounds: Bounds, tag: str | None
    ) -> list[list[Entry]]:
        """The entries of the ``targets`` that have any, as they travel; feeds with none left out.
        Most pulled feeds have nothing above a read's floor (on the full dataset, about 17 of 25):
        an empty list would only cost a call here and a slot in the merge."""
        got = await self._store.read_many(targets, limit=need, bounds=bounds, tag=tag)
        pairs = zip(targets, got, strict=True)
        return [moved for target, entries in pairs if entries and (moved := _travelling(target, entries))]

    async def _cap_boundary(self, feed_key: str, cap: int) -> int | None:
        """The id of the oldest entry the cap keeps, or None while the feed holds fewer."""
        got = await self._store.read_entries(feed_key, limit=1, offset=cap - 1, slim=True)
        return got[0].id if got else None


def _travelling(target_key: str, entries: list[Entry]) -> list[Entry]:
    """Only what was posted to the followed feed itself travels (fan-out is not transitive).  The
    named tuple is built with ``tuple.__new__``: its own constructor is a Python call per entry."""
    origin = FeedRef.feed_id_of(target_key)
    new = tuple.__new__
    return [new(Entry, (e[0], origin, e[2], "", e[4], e[5], e[6])) for e in entries if e[1] is None]


def _raise_lower(bounds: Bounds, lowest: int) -> Bounds:
    current = bounds.lower()
    return Bounds(lt=bounds.lt, lte=bounds.lte, gte=lowest if current is None else max(current, lowest))


def _lower_upper(bounds: Bounds, highest: int) -> Bounds:
    current = bounds.upper()
    return Bounds(lte=highest if current is None else min(current, highest), gt=bounds.gt, gte=bounds.gte)


def _newest(lists: Sequence[Sequence[Entry]], need: int) -> list[Entry]:
    """The ``need`` newest distinct entries of ``lists`` (each newest first); of two with one id,
    the one from the earlier list (the feed's own copy comes first).

    A first page merges a full own page with the few pulled entries above its floor: sorting the
    lot in C beats a heap merge, which runs Python code per entry taken.  A page with no floor may
    bring ``need`` entries from every pulled feed; then the merge takes only what it needs."""
    if sum(map(len, lists)) <= SORT_UP_TO * need:
        return _take(sorted(chain.from_iterable(lists), key=_ID, reverse=True), need)  # stable
    return _take(heapq.merge(*lists, key=_ID, reverse=True), need)


def _take(entries: Iterable[Entry], need: int) -> list[Entry]:
    """The first ``need`` entries with distinct ids."""
    seen: set[int] = set()
    out: list[Entry] = []
    for entry in entries:
        if entry[0] not in seen:
            seen.add(entry[0])
            out.append(entry)
            if len(out) == need:
                break
    return out
