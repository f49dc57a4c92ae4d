"""Follows and feed activity of the embedded store (a part of :class:`~feeds.store.sqlite.SqliteStore`,
kept apart to keep modules small).  The methods run on the store's read connection and its group
commit, which :class:`SqliteStore` provides."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from feeds.store.base import Follow, ReadPlan
from feeds.store.sqlite_sql import READ_PLAN, marks

BIG_FEEDS_TTL_S = 5.0
# Read plans kept in memory.  Each holds its pulled keys as the big-feed set's own strings, so a plan
# costs its tuple (~250 bytes with 25 pulled feeds), not copies of the keys.  They are kept as plain
# tuples of strings and ints, which the garbage collector stops tracking: as ReadPlan objects, the
# 10k of the benchmark dataset were most of what each full collection walked.
PLANS = 100_000
Memo = tuple[int, tuple[str, ...], "int | None"]
T = TypeVar("T")


class SqliteFollows:
    """Follows, follower counts and last-read times, with the read plans built from them memoized.

    This store makes every change to those tables, so it knows when a plan goes stale: its own
    follows, unfollows and last-read time drop it (after the write, so a plan read meanwhile is
    dropped too), and a change of the big-feed set drops every plan."""

    _big: dict[int, tuple[dict[str, str], float]]
    _plans: dict[str, Memo]

    if TYPE_CHECKING:

        def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _write(self, fn: Callable[[sqlite3.Connection], T], rows: int = 1) -> Awaitable[T]: ...

    # --- follows --------------------------------------------------------------------------------
    async def follow(self, follows: Sequence[Follow]) -> list[bool]:
        def op(conn: sqlite3.Connection) -> list[bool]:
            created = []
            for f in follows:
                cur = conn.execute(
                    "INSERT OR IGNORE INTO follows(source, target, created_us) VALUES (?,?,?)",
                    (f.source, f.target, f.created_us),
                )
                created.append(cur.rowcount == 1)
                if cur.rowcount == 1:  # counts are denormalised so reads never count(*) a big author
                    conn.execute(
                        "INSERT INTO follower_counts(feed, n) VALUES (?, 1) "
                        "ON CONFLICT(feed) DO UPDATE SET n=n+1",
                        (f.target,),
                    )
            return created

        created = await self._write(op)
        self._counts_changed([f.source for f in follows])
        return created

    async def unfollow(self, source: str, target: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM follows WHERE source=? AND target=?", (source, target))
            if cur.rowcount == 1:
                conn.execute("UPDATE follower_counts SET n=n-1 WHERE feed=?", (target,))
            return cur.rowcount == 1

        removed = await self._write(op)
        self._counts_changed([source])
        return removed

    async def followers(self, target: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = self._read(
            "SELECT source, target, created_us FROM follows WHERE target=? "
            "ORDER BY created_us DESC, source LIMIT ? OFFSET ?",
            (target, -1 if limit is None else limit, offset),
        )
        return [Follow(*r) for r in rows]

    async def following(self, source: str, *, offset: int = 0, limit: int | None = None) -> list[Follow]:
        rows = self._read(
            "SELECT source, target, created_us FROM follows WHERE source=? "
            "ORDER BY created_us DESC, target LIMIT ? OFFSET ?",
            (source, -1 if limit is None else limit, offset),
        )
        return [Follow(*r) for r in rows]

    async def follower_count(self, target: str) -> int:
        rows = self._read("SELECT n FROM follower_counts WHERE feed=?", (target,))
        return int(rows[0][0]) if rows else 0

    async def read_plan(self, feed: str, pull_threshold: int) -> ReadPlan:
        # The followed targets come back as one string and are matched against the (few) feeds
        # above the threshold in Python: joining every target to its count in SQL cost 150-200 us
        # a read on the 100k-user dataset, this ~25 us; a memoized plan costs a dict lookup.  The
        # set of big feeds is cached: follows and unfollows through this store expire it, and it is
        # read again every BIG_FEEDS_TTL_S anyway (cheap: an index range on the count).
        big = self._big_feeds(pull_threshold)  # first: a changed set drops every plan
        memo = self._plans.get(feed)
        if memo is not None:
            return ReadPlan._make(memo)
        ((targets, last),) = self._read(READ_PLAN, (feed,))
        followed = targets.split("\n") if targets else []
        memo = (len(followed), tuple(big[t] for t in followed if t in big), last)
        if len(self._plans) >= PLANS:
            self._plans.clear()
        self._plans[feed] = memo
        return ReadPlan._make(memo)

    def _big_feeds(self, threshold: int) -> dict[str, str]:
        """The feeds with more than ``threshold`` followers, each mapped to itself (one string
        object per key, shared by every plan that pulls it)."""
        now = time.monotonic()
        cached = self._big.get(threshold)
        if cached is not None and cached[1] > now:
            return cached[0]
        rows = self._read("SELECT feed FROM follower_counts WHERE n > ?", (threshold,))
        big = {r[0]: r[0] for r in rows}
        if cached is not None and cached[0].keys() == big.keys():
            big = cached[0]
        else:
            self._plans.clear()  # another threshold, or feeds crossed it
        self._big = {threshold: (big, now + BIG_FEEDS_TTL_S)}
        return big

    def _counts_changed(self, sources: Sequence[str]) -> None:
        """After follows or unfollows: the big-feed set is read again at the next plan (this store
        owns every count change, so no read sees a stale one) and the sources' plans go."""
        self._big = {t: (big, 0.0) for t, (big, _) in self._big.items()}
        self._forget_plans(sources)

    def _forget_plans(self, feeds: Iterable[str]) -> None:
        for feed in feeds:
            self._plans.pop(feed, None)

    async def follower_counts(self, targets: Sequence[str]) -> dict[str, int]:
        out = dict.fromkeys(targets, 0)
        for start in range(0, len(targets), 500):
            chunk = list(targets[start : start + 500])
            rows = self._read(
                f"SELECT feed, n FROM follower_counts WHERE feed IN ({marks(len(chunk))})", chunk
            )
            out.update(rows)
        return out

    # --- feed activity --------------------------------------------------------------------------
    async def set_last_read(self, feed: str, us: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO feed_state(feed, last_read_us) VALUES (?, ?) "
                "ON CONFLICT(feed) DO UPDATE SET last_read_us=excluded.last_read_us",
                (feed, us),
            )

        await self._write(op)
        self._forget_plans([feed])

    async def last_read(self, feed: str) -> int | None:
        rows = self._read("SELECT last_read_us FROM feed_state WHERE feed=?", (feed,))
        return int(rows[0][0]) if rows else None

    async def active_followers(self, target: str, since_us: int) -> list[str]:
        # One string rather than a row per follower, as in READ_PLAN: 1.2-1.7 against 1.8-2.8 us
        # per follower on the 100k-user dataset (authors of 20 to 10k followers, pages cached).
        ((keys,),) = self._read(
            "SELECT group_concat(f.source, char(10)) FROM follows f JOIN feed_state s ON s.feed = f.source "
            "WHERE f.target=? AND s.last_read_us >= ?",
            (target, since_us),
        )
        return keys.split("\n") if keys else []
